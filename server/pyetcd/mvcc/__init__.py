"""pyetcd.mvcc."""
