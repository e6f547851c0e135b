"""The operator's I/O around the pure decisions: the Kubernetes client (``kube``), one
cluster's observation (``observe``), the executor of a plan's actions (``execute``), events
posted outside kopf (``events``), the reconcile pass itself (``reconciler``), the operator-wide
periodic refresh (``refresh``) and the limit on clusters rolling at once (``rollouts``).
kopf never appears here: ``handlers`` hands over to this package."""
