"""Tests of pyetcd.wal."""
