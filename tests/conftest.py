"""Suite-wide pytest hooks: report which servers the integration tests will run against."""

from __future__ import annotations

import os

from tests.integration.cluster import ETCD_BIN, ETCDCTL_BIN, PYETCD_BIN


def pytest_report_header() -> list[str]:
    flavours = os.environ.get("COMPAT_FLAVOURS", "etcd,pyetcd")
    return [
        f"servers: etcd={ETCD_BIN} pyetcd={PYETCD_BIN} etcdctl={ETCDCTL_BIN}",
        f"compat flavours: {flavours}",
    ]
