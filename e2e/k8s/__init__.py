"""Build and cache the Kubernetes control-plane binaries for the end-to-end tests."""
