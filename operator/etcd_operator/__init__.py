"""etcd-operator: a kopf operator that runs pyetcd (or upstream etcd) clusters on Kubernetes."""
