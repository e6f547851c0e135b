"""End-to-end tests: a real Kubernetes control plane on loopback (opt-in: ``make e2e``)."""
