"""``kubectl etcd``: the day-2 commands of etcd-operator as a kubectl plugin.

kubectl runs any ``kubectl-<name>`` on PATH as ``kubectl <name>``; this package is the
``kubectl-etcd`` console script. It reaches the cluster only by running ``kubectl`` itself (the
user's kubeconfig, context and auth plugins apply as they do to kubectl), behind the small
``kubectl.Runner`` interface, so that everything else is tested against a fake.

Modules, from the edge inwards:

- ``main``: argument parsing, the global flags, exit codes, one-line errors;
- ``commands``: each subcommand's flow (what to read, what to write, what to print);
- ``kubectl``: the runner (a ``kubectl`` subprocess) and the JSON verbs over it, with
  kubectl's failures turned into one-line errors;
- pure parts: ``views`` (objects -> view models), ``render`` (tables, JSON, YAML),
  ``restore`` (the new cluster's manifest), ``waiting`` (when a backup wait is over).

It speaks neither to etcd nor to the Kubernetes API directly, and imports no operator runtime:
only the API models (names, validation) and the pure naming of on-demand backups.
"""
