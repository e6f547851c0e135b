"""etcd_operator.backup."""
