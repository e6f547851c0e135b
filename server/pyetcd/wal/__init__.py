"""pyetcd.wal."""
