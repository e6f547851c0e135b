"""Unit tests of the components: the manifests an EtcdCluster owns."""
