"""etcd_operator.api."""
