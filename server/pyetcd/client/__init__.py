"""pyetcd.client."""
