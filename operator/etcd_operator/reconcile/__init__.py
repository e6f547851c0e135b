"""etcd_operator.reconcile."""
