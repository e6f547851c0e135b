"""pyetcd.backend."""
