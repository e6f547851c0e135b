"""etcd_operator.components: one module per Kubernetes object an EtcdCluster owns.

Pure functions ``(cluster, settings) -> manifest`` (plain dicts for server-side apply), no I/O:
``naming`` (names, labels, ports, URLs), ``owner`` (owner reference, metadata), ``flags`` (the
member's image, command and etcd flags), ``bootstrap`` (the bootstrap ConfigMap), ``services``,
``pdb``, ``networkpolicy``, ``statefulset``, and ``children`` (all of them in apply order).
"""
