"""pyetcd.transport."""
