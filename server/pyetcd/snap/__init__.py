"""pyetcd.snap."""
