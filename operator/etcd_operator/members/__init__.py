"""etcd_operator.members."""
