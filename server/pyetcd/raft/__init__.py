"""pyetcd.raft."""
