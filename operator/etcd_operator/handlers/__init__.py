"""etcd_operator.handlers."""
