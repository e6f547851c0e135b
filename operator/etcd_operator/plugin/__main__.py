"""``python -m etcd_operator.plugin``: ``kubectl-etcd`` without the console script."""

from __future__ import annotations

import sys

from etcd_operator.plugin.main import main

sys.exit(main())
