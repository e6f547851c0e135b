"""pyetcd.backend: a bbolt-format B+tree file of buckets (see ``contract`` and ``bbolt``).

Modules: ``contract`` (what upper layers may rely on), ``page`` (on-disk codecs), ``freelist``
(bbolt's hashmap freelist), ``node`` (in-memory B+tree nodes), ``bbolt`` (``BoltBackend``).
"""
