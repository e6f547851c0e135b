"""Tests of pyetcd.snap."""
