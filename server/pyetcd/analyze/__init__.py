"""pyetcd.analyze: what fills an etcd db, read offline from its bbolt file (`pyetcdutl analyze`).

Works on upstream etcd's snapshots and data dirs as on pyetcd's: it reads only etcd's on-disk
format (the ``key``, ``lease`` and ``meta`` buckets), never a live server.

Modules: ``report`` (the result dataclasses), ``core`` (the pure analysis of bucket entries),
``reader`` (streams a db file through ``pyetcd.backend.scan`` into the core), ``render`` (the
table and the JSON document, whose shape ``render``'s docstring specifies).

Layering: imports ``pyetcd.backend``, ``pyetcd.mvcc`` (revision helpers) and ``pyetcd.proto``;
``pyetcd.utl`` imports it.
"""

from pyetcd.analyze.core import AnalyzeError, analyze, key_prefix
from pyetcd.analyze.reader import read_report
from pyetcd.analyze.render import SCHEMA_VERSION, format_json, format_table, to_json
from pyetcd.analyze.report import Analysis, DbFile, Options, Report, Source

__all__ = [
    "SCHEMA_VERSION",
    "Analysis",
    "AnalyzeError",
    "DbFile",
    "Options",
    "Report",
    "Source",
    "analyze",
    "format_json",
    "format_table",
    "key_prefix",
    "read_report",
    "to_json",
]
