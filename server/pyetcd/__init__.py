"""pyetcd: an etcd-compatible server (Raft, WAL, MVCC, a bbolt-format backend) in Python."""

__version__ = "3.5.17"
