"""``kubectl-etcd``, run by kubectl as ``kubectl etcd``: arguments, the session, exit codes.

kubectl passes every argument after ``etcd`` to the plugin (its own flags may not come before
the plugin's name), so the global flags (``-n``, ``--context``, ``--kubeconfig``, ``-o``) are
accepted before and after the subcommand alike. Exit codes: 0 done, 1 a failure (one line on
stderr: kubectl's, the cluster's, a failed backup, a timeout), 2 a usage error or what the
operator does not record (yet): a keyspace analysis of a cluster that has none.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from etcd_operator.api.backup import PointInTime
from etcd_operator.plugin import commands
from etcd_operator.plugin.commands import DEFAULT_TIMEOUT, Session
from etcd_operator.plugin.errors import EXIT_FAILURE, PluginError
from etcd_operator.plugin.kubectl import Kube, KubectlProcess
from etcd_operator.plugin.render import FORMATS
from etcd_operator.plugin.waiting import parse_duration

PROG = "kubectl etcd"
EXIT_INTERRUPTED = 130

DESCRIPTION = """\
Day-2 commands for etcd-operator's EtcdClusters.

  kubectl etcd status [NAME] [-A]                    the cluster at a glance, or one line each
  kubectl etcd backup NAME [--wait] [--timeout 10m]  take a backup now (the backup annotation)
  kubectl etcd backups NAME                          the cluster's EtcdBackups, newest first
  kubectl etcd restore NAME --from BACKUP --into NEW [--dry-run]
                                                     a new cluster from a backup, NAME's spec
  kubectl etcd restore NAME --to-revision N | --to-time T --into NEW [--from BACKUP]
                                                     ... at a point of its continuous backup
  kubectl etcd keyspace NAME                         what fills the key space (status.keyspace)
"""


def _globals(defaults: bool) -> argparse.ArgumentParser:
    """The global flags; on the subcommands without defaults, so that a flag given before the
    subcommand is not reset by the subcommand's parser."""
    suppress = argparse.SUPPRESS
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "-n", "--namespace", default=None if defaults else suppress, help="the namespace"
    )
    flags.add_argument(
        "--context", default=None if defaults else suppress, help="the kubeconfig context"
    )
    flags.add_argument(
        "--kubeconfig", default=None if defaults else suppress, help="the kubeconfig file"
    )
    flags.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default="table" if defaults else suppress,
        help="table (default), json or yaml",
    )
    return flags


def _timeout(value: str) -> str:
    try:
        parse_duration(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_globals(defaults=True)],
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_globals(defaults=False)]

    status = sub.add_parser("status", parents=common, help="the cluster at a glance")
    status.add_argument("name", nargs="?", metavar="NAME")
    status.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (without NAME)"
    )

    backup = sub.add_parser("backup", parents=common, help="take a backup now")
    backup.add_argument("name", metavar="NAME")
    backup.add_argument("--wait", action="store_true", help="wait until it succeeded or failed")
    backup.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT,
        help=f"how long --wait waits (10m, 90s, 1h30m; default {DEFAULT_TIMEOUT})",
    )

    listing = sub.add_parser("backups", parents=common, help="the cluster's backups")
    listing.add_argument("name", metavar="NAME")

    restore = sub.add_parser("restore", parents=common, help="a new cluster from a backup")
    restore.add_argument("name", metavar="NAME", help="the cluster whose spec is copied")
    restore.add_argument(
        "--from",
        dest="source_backup",
        metavar="BACKUP",
        help="the EtcdBackup; with a point, the newest one before it when not given",
    )
    restore.add_argument("--into", dest="new", required=True, metavar="NEW")
    point = restore.add_mutually_exclusive_group()
    point.add_argument(
        "--to-revision", type=int, metavar="N", help="replay its continuous backup up to N"
    )
    point.add_argument(
        "--to-time", metavar="T", help="... up to the time T (RFC 3339, with a zone)"
    )
    restore.add_argument(
        "--dry-run", action="store_true", help="print the new cluster's manifest, create nothing"
    )

    keyspace = sub.add_parser(
        "keyspace", parents=common, help="what fills the key space: the last analysis"
    )
    keyspace.add_argument("name", metavar="NAME")
    return top


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    found = parser()
    args = found.parse_args(argv)
    if args.command == "status" and args.name and args.all_namespaces:
        found.error("status: -A lists every cluster; give it without NAME")
    if args.command == "restore":
        if args.source_backup is None and args.to_revision is None and args.to_time is None:
            found.error("restore: --from BACKUP, or a point (--to-revision, --to-time)")
        try:
            args.point = point_in_time(args.to_revision, args.to_time)
        except ValueError as err:
            found.error(f"restore: {err}")
    return args


def point_in_time(revision: int | None, when: str | None) -> PointInTime | None:
    if revision is None and when is None:
        return None
    try:
        return PointInTime(revision=revision, time=when)
    except ValidationError as err:
        raise ValueError(
            "--to-revision is a revision (1 or more) and --to-time an RFC 3339 time with a "
            f"zone, e.g. 2026-12-06T14:03:00Z ({err.errors()[0]['msg']})"
        ) from None


def session_for(args: argparse.Namespace) -> Session:
    runner = KubectlProcess(context=args.context, kubeconfig=args.kubeconfig)
    return Session(Kube(runner, args.namespace), sys.stdout, sys.stderr, args.output)


def execute(session: Session, args: argparse.Namespace) -> int:
    if args.command == "status":
        return commands.status(session, args.name, args.all_namespaces)
    if args.command == "backup":
        timeout = parse_duration(args.timeout)
        return commands.backup(session, args.name, args.wait, timeout, args.timeout)
    if args.command == "backups":
        return commands.backups(session, args.name)
    if args.command == "restore":
        return commands.restore(
            session, args.name, args.source_backup, args.new, args.dry_run, point=args.point
        )
    if args.command == "keyspace":
        return commands.keyspace(session, args.name)
    raise AssertionError(f"unknown command {args.command}")  # argparse allows no other


def main(
    argv: Sequence[str] | None = None,
    session: Callable[[argparse.Namespace], Session] = session_for,
) -> int:
    args = parse_args(argv)
    current = session(args)
    try:
        return execute(current, args)
    except PluginError as err:
        current.err.write(f"{PROG} {args.command}: {err}\n")
        return err.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as err:  # a bug: still one line, never a traceback in a user's terminal
        current.err.write(f"{PROG} {args.command}: unexpected {type(err).__name__}: {err}\n")
        return EXIT_FAILURE
