"""Entry point of the operator process: ``etcd-operator`` / ``python -m etcd_operator``.

Reads the operator settings from ``ETCD_OPERATOR_*`` variables, starts the metrics endpoint,
registers the EtcdCluster handlers on a registry of its own and runs kopf with a liveness
endpoint. Flags cover what differs per deployment (namespaces, peering, ports); every flag
also has an environment variable so the Helm chart can set it the same way as the settings.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from etcd_operator import metrics
from etcd_operator.api.settings import ENV_PREFIX, OperatorSettings
from etcd_operator.handlers import register, register_backups, register_defrags
from etcd_operator.runtime.backups import BackupRunner
from etcd_operator.runtime.defrags import DefragRequests
from etcd_operator.runtime.events import COMPONENT

DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"
DEFAULT_METRICS_PORT = 9090
# kopf's bookkeeping goes into annotations under our group, never into the status: the CRD's
# structural schema would prune unknown status fields.
KOPF_PREFIX = "etcd.pyetcd.io"
# kopf's finalizer, by kopf's default name. No handler of ours requires it (no timer, daemon or
# delete handler), so kopf never adds it and removes it from the clusters that carry it: those
# of operator versions that had a status timer. The name is pinned so that this removal keeps
# working should kopf's default ever change.
KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv: Sequence[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
    def env(name: str, default: str) -> str:
        return environ.get(ENV_PREFIX + name, default)

    parser = argparse.ArgumentParser(
        prog="etcd-operator", description="Run the etcd operator (kopf) for EtcdCluster resources."
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="watch only this namespace (repeatable; env ETCD_OPERATOR_NAMESPACES, comma list)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch all namespaces (the default)"
    )
    parser.add_argument(
        "--standalone",
        action=argparse.BooleanOptionalAction,
        default=_truthy(env("STANDALONE", "true")),
        help="run without kopf peering (one replica; env ETCD_OPERATOR_STANDALONE)",
    )
    parser.add_argument(
        "--priority", type=int, default=int(env("PRIORITY", "0")), help="kopf peering priority"
    )
    parser.add_argument(
        "--liveness",
        default=env("LIVENESS", DEFAULT_LIVENESS),
        help="kopf liveness endpoint URL; empty to disable (env ETCD_OPERATOR_LIVENESS)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(env("METRICS_PORT", str(DEFAULT_METRICS_PORT))),
        help="port of /metrics; 0 to disable (env ETCD_OPERATOR_METRICS_PORT)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="verbose logging")
    parser.add_argument("--debug", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if args.namespace is None:  # flags replace the environment's list rather than extend it
        args.namespace = [n for n in env("NAMESPACES", "").split(",") if n]
    return args


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = KOPF_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX,
        # The diff base is the spec only: status and kopf's annotations are not user intent.
        ignored_fields=["status"],
    )
    # Our handlers post their own events; kopf's per-handler chatter would drown them.
    settings.posting.level = logging.WARNING
    # The events' source, as with the events the status refresh posts itself.
    settings.posting.reporting_component = COMPONENT
    return settings


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own logins, through its public API: the in-cluster service account, else the
    kubeconfig. A plain ``kopf.OperatorRegistry`` has no login handler at all, so without this
    the operator could not authenticate (``LoginError: Ran out of valid credentials``)."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return info or kopf.login_with_kubeconfig(**kwargs)


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """The operator's handlers and its login, on a registry of their own."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(id="login", registry=registry)(login)
    reconciler = register(registry, settings)
    register_backups(registry, BackupRunner(settings, lambda: reconciler.kube))
    register_defrags(registry, DefragRequests(lambda: reconciler.kube, reconciler.reconcile))
    return registry


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    env = os.environ if environ is None else environ
    args = parse_args(argv, env)
    settings = OperatorSettings.from_env(env)
    kopf.configure(verbose=args.verbose, debug=args.debug)
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    registry = build_registry(settings)
    namespaces = [] if args.all_namespaces else list(args.namespace)
    kopf.run(
        registry=registry,
        settings=kopf_settings(),
        standalone=args.standalone,
        priority=args.priority,
        liveness_endpoint=args.liveness or None,
        clusterwide=not namespaces,
        namespaces=namespaces,
    )


if __name__ == "__main__":
    main()
