"""pyetcd.api."""
