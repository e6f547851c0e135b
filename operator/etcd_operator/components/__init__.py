"""etcd_operator.components."""
