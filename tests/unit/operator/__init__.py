"""Unit tests of the etcd operator."""
