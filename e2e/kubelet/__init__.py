"""The process kubelet of the end-to-end tests: the one stand-in of the e2e environment.

It registers Nodes and runs the pods the scheduler binds to them as local processes, each pod in
a network namespace of its own (an address on a private bridge in a namespace of its own) and
each container in a private mount namespace, with Kubernetes DNS names, ClusterIPs, volumes,
probes, restarts and truthful status. Modules:

- :mod:`~e2e.kubelet.kubelet`: the process and its nodes; ``python -m e2e.kubelet``;
- :mod:`~e2e.kubelet.node`: Node registration, Lease and status heartbeats;
- :mod:`~e2e.kubelet.pods`: one pod's lifecycle; :mod:`~e2e.kubelet.podspec`: its pure rules;
- :mod:`~e2e.kubelet.launch`: the launcher that enters a pod's namespaces and execs a container;
- :mod:`~e2e.kubelet.images`: the image -> command table;
- :mod:`~e2e.kubelet.netns`: network namespaces, bridge and veths;
- :mod:`~e2e.kubelet.services`, :mod:`~e2e.kubelet.dns`: cluster DNS and the ClusterIP proxy;
- :mod:`~e2e.kubelet.provisioner`: PVCs backed by directories (StorageClass ``local-dir``);
- :mod:`~e2e.kubelet.server`: the kubelet API the API server calls (HTTPS): ``kubectl logs``
  (:mod:`~e2e.kubelet.logs`) and ``kubectl exec`` (:mod:`~e2e.kubelet.spdy`);
- :mod:`~e2e.kubelet.control`, :mod:`~e2e.kubelet.faults`: the control API and the tests'
  handle (exec, kill, wipe, stop a node, cut a pod off the network).
"""
