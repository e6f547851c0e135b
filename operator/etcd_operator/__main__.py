"""``python -m etcd_operator``: run the operator (see ``etcd_operator.main``)."""

from __future__ import annotations

from etcd_operator.main import main

main()
