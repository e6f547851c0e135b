"""Unit tests of the EtcdCluster API: models, the generated CRD and the examples."""
