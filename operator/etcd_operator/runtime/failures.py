"""How a failed pass is told and retried: the errors the handlers translate for kopf, a
message a user can act on, a bounded label for the metric, and the backoff between retries; and
the reading of a cluster's body, since a spec that does not parse is the one failure that no
retry can fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from etcd_operator.api.v1alpha1 import EtcdCluster, EtcdClusterStatus
from etcd_operator.members import describe_etcd_error
from etcd_operator.runtime.kube import describe_kube_error

# Backoff of a failing cluster's retries: doubling from the first delay up to this cap.
MAX_RETRY_DELAY = 300.0


class InvalidSpecError(Exception):
    """The cluster's spec does not parse: retrying cannot fix it, only the user can."""


class PassFailedError(Exception):
    """A pass failed; retry after ``delay`` seconds."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


def error_reason(err: BaseException) -> str:
    """A short, bounded label for the errors metric."""
    module = type(err).__module__
    if module.startswith("kubernetes") or module.startswith("urllib3"):
        return "kubernetes"
    if module.startswith("pyetcd") or module.startswith("grpc"):
        return "etcd"
    return "unexpected"


def describe(err: BaseException) -> str:
    """What a user needs to read of a failed pass: the API server's or etcd's own message."""
    return describe_kube_error(err) or describe_etcd_error(err) or f"{type(err).__name__}: {err}"


def retry_delay(first: float, failures: int) -> float:
    """The delay before retrying after ``failures`` failed passes in a row: ``first``, doubling,
    at most ``MAX_RETRY_DELAY``."""
    return float(min(MAX_RETRY_DELAY, first * 2.0 ** max(0, failures - 1)))


def parse_status(body: Mapping[str, Any]) -> EtcdClusterStatus | None:
    """The status as the model knows it: fields it does not know (kopf's own bookkeeping) are
    dropped, and an unreadable status counts as none (it is recomputed anyway)."""
    raw = dict(body.get("status") or {})
    known = {k: v for k, v in raw.items() if k in EtcdClusterStatus.model_fields}
    if not known:
        return None
    try:
        return EtcdClusterStatus.model_validate(known)
    except ValidationError:
        return None


def parse_cluster(body: Mapping[str, Any]) -> EtcdCluster:
    """The EtcdCluster model of a body as the API server returned it (metadata kept whole);
    ``InvalidSpecError`` when the spec does not parse."""
    try:
        cluster = EtcdCluster.model_validate(
            {"metadata": dict(body.get("metadata") or {}), "spec": dict(body.get("spec") or {})}
        )
    except ValidationError as err:
        raise InvalidSpecError(f"invalid spec: {err}") from err
    return cluster.model_copy(update={"status": parse_status(body)})
