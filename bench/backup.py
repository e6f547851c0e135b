"""Backup and restore of a large database via S3, library against baseline: ``bench.backup``.

For each flavour in ``--flavours`` (default ``etcd,pyetcd``; Debian's upstream etcd 3.4 and
pyetcd), in turn: one member on loopback with ``--quota-backend-bytes`` raised to fit, filled to
about ``--size`` MB with ``--value-size`` values (default 1 MiB, half random bytes and half
zeros, so zstd has something to do), written by concurrent puts. S3 is moto in server mode on a
free loopback port (the integration tests' S3 endpoint, here without IAM checks). Then, one
after the other (the machine has 2 cores: nothing runs concurrently with a measurement):

* backup (library): ``EtcdClient.snapshot`` streamed through ``upload_snapshot`` into S3, with
  compression ``none`` and ``zstd``, in a subprocess that does only that: seconds, MB/s of the
  raw snapshot, peak RSS and tracemalloc peak of that process;
* backup (baseline): ``etcdctl snapshot save`` to a file, then one boto3 ``upload_file`` of it
  (default transfer config), in a subprocess: seconds of each step and in total, MB/s, peak RSS
  of the uploading Python process (and of etcdctl);
* restore (library): ``download_snapshot`` to a file (of each object), then ``pyetcdutl
  snapshot restore``; baseline: boto3 ``download_file`` of the uncompressed object, then
  ``etcdctl snapshot restore``. Seconds, MB/s, peak RSS of each step. A second download
  baseline (one GetObject streamed to a file) is shown too: ``download_file``'s ranged GETs on
  10 threads are slow against moto.

Prints a markdown table (ratio = library / baseline: seconds and memory, lower is better for
the library) and writes JSON to ``bench/results/<timestamp>-backup.json``. MB = 10^6 bytes,
MB/s = raw snapshot bytes / seconds. Peak RSS is the process's own ``VmHWM`` (``getrusage``'s
``ru_maxrss`` is in the JSON too, but Linux carries the spawning process's peak over ``execve``,
so it is at least the orchestrator's). The Python workers' peak includes the interpreter and
imports (``rss_idle_mib``: the same process right after its imports). Only loopback
addresses. Not part of ``make test``: ``make bench-backup`` (BENCH_BACKUP_ARGS="--size 64").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.cluster import (
    ETCDCTL_BIN,
    PYETCDUTL_BIN,
    Flavour,
    Member,
    as_flavour,
    etcdctl_env,
    port_open,
    tail,
)
from tools.ports import free_port

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
MB = 1_000_000
MiB = 1 << 20
REGION = "us-east-1"
ACCESS_KEY = "bench"
SECRET_KEY = "bench-secret-key"
START_TIMEOUT = 120.0
CMD_TIMEOUT = 3600.0
FILL_CONCURRENCY = 4


# ---------------------------------------------------------------------------------------------
# workers: each runs in a fresh `python -m bench.backup --worker <json>` process and prints JSON


def _rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """``getrusage``'s peak RSS. Linux carries the spawning process's peak over ``execve``
    (``signal->maxrss``; Python spawns with vfork), so this is at least the parent's peak."""
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def _hwm_mib(pid: int | str = "self") -> float | None:
    """Peak RSS of the process's own address space (``VmHWM``): fresh at ``execve``."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def run_measured(cmd: Sequence[str]) -> dict[str, Any]:
    """Run a command: seconds and peak RSS (``VmHWM`` sampled every 20 ms; ``wait4``'s too)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=etcdctl_env()
        )
        hwm = 0.0
        while True:
            sample = _hwm_mib(proc.pid)
            if sample is not None:
                hwm = max(hwm, sample)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)  # a sampling interval
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            text = err.read().decode(errors="replace")[-2000:]
            return {"failure": f"{' '.join(cmd)} failed ({proc.returncode}): {text}"}
    return {
        "seconds": seconds,
        "rss_peak_mib": hwm,
        "rss_peak_getrusage_mib": usage.ru_maxrss / 1024,
    }


def _store(spec: dict[str, Any]) -> Any:
    from etcd_operator.backup import Credentials, StoreSettings

    return StoreSettings(
        bucket=spec["bucket"],
        endpoint=spec["s3"],
        region=REGION,
        force_path_style=True,
        credentials=Credentials(ACCESS_KEY, SECRET_KEY),
        read_timeout=600.0,
    )


def _boto3_client(spec: dict[str, Any]) -> Any:
    import boto3.session
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    return session.client(
        "s3", endpoint_url=spec["s3"], config=Config(s3={"addressing_style": "path"})
    )


class TimedClient:
    """A boto3 client whose calls add up their seconds per operation (where the time goes)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.seconds: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

        return timed


def worker_upload(spec: dict[str, Any]) -> dict[str, Any]:
    import tracemalloc

    from etcd_operator.backup import make_client, upload_snapshot
    from pyetcd.client import EtcdClient

    store = _store(spec)
    s3 = TimedClient(make_client(store))
    idle = _hwm_mib()

    async def run() -> Any:
        async with EtcdClient([spec["endpoint"]], timeout=60.0) as client:
            return await upload_snapshot(
                client.snapshot(spec["endpoint"]),
                store,
                spec["key"],
                compression=spec["compression"],
                client=s3,
            )

    tracemalloc.start()
    t0 = time.perf_counter()
    result = asyncio.run(run())
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    return {
        "seconds": seconds,
        "raw_bytes": result.raw_size,
        "stored_bytes": result.stored_size,
        "parts": result.parts,
        "rss_peak_mib": _hwm_mib(),
        "rss_peak_getrusage_mib": _rss_mib(),
        "rss_idle_mib": idle,
        "tracemalloc_peak_mib": peak / MiB,
        "s3_seconds": {name: round(t, 3) for name, t in sorted(s3.seconds.items())},
    }


def worker_stream(spec: dict[str, Any]) -> dict[str, Any]:
    """Diagnostic: ``EtcdClient.snapshot`` drained and dropped (no encoding, no S3)."""
    from pyetcd.client import EtcdClient

    idle = _hwm_mib()

    async def run() -> int:
        total = 0
        async with EtcdClient([spec["endpoint"]], timeout=60.0) as client:
            async for chunk in client.snapshot(spec["endpoint"]):
                total += len(chunk)
        return total

    t0 = time.perf_counter()
    total = asyncio.run(run())
    return {
        "seconds": time.perf_counter() - t0,
        "raw_bytes": total,
        "rss_peak_mib": _hwm_mib(),
        "rss_idle_mib": idle,
    }


def worker_baseline_upload(spec: dict[str, Any]) -> dict[str, Any]:
    import tracemalloc

    client = _boto3_client(spec)
    client.list_buckets()  # the connection and boto3's lazy imports, before the clock
    idle = _hwm_mib()
    path = Path(spec["file"])
    t0 = time.perf_counter()
    save = run_measured(
        [
            str(ETCDCTL_BIN),
            f"--endpoints={spec['endpoint']}",
            "--command-timeout=3600s",
            "snapshot",
            "save",
            str(path),
        ]
    )
    t1 = time.perf_counter()
    if "failure" in save:
        raise RuntimeError(save["failure"])
    tracemalloc.start()
    client.upload_file(str(path), spec["bucket"], spec["key"])
    t2 = time.perf_counter()
    _, peak = tracemalloc.get_traced_memory()
    return {
        "seconds": t2 - t0,
        "save_seconds": t1 - t0,
        "upload_seconds": t2 - t1,
        "raw_bytes": path.stat().st_size,
        "stored_bytes": path.stat().st_size,
        "rss_peak_mib": _hwm_mib(),
        "rss_peak_getrusage_mib": _rss_mib(),
        "rss_idle_mib": idle,
        "tracemalloc_peak_mib": peak / MiB,
        "etcdctl_rss_peak_mib": save["rss_peak_mib"],
    }


def worker_download(spec: dict[str, Any]) -> dict[str, Any]:
    import tracemalloc

    from etcd_operator.backup import download_snapshot

    store = _store(spec)
    idle = _hwm_mib()
    tracemalloc.start()
    t0 = time.perf_counter()
    result = asyncio.run(download_snapshot(store, spec["key"], spec["file"]))
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    return {
        "seconds": seconds,
        "raw_bytes": result.raw_size,
        "stored_bytes": result.stored_size,
        "rss_peak_mib": _hwm_mib(),
        "rss_peak_getrusage_mib": _rss_mib(),
        "rss_idle_mib": idle,
        "tracemalloc_peak_mib": peak / MiB,
    }


def worker_baseline_download(spec: dict[str, Any]) -> dict[str, Any]:
    import tracemalloc

    client = _boto3_client(spec)
    client.list_buckets()
    idle = _hwm_mib()
    tracemalloc.start()
    t0 = time.perf_counter()
    client.download_file(spec["bucket"], spec["key"], spec["file"])
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    size = Path(spec["file"]).stat().st_size
    return {
        "seconds": seconds,
        "raw_bytes": size,
        "stored_bytes": size,
        "rss_peak_mib": _hwm_mib(),
        "rss_peak_getrusage_mib": _rss_mib(),
        "rss_idle_mib": idle,
        "tracemalloc_peak_mib": peak / MiB,
    }


def worker_baseline_get(spec: dict[str, Any]) -> dict[str, Any]:
    """A second download baseline: one GetObject, its body copied to the file in 1 MiB reads
    (``download_file`` fetches ranges on 10 threads, which servers like moto serve slowly)."""
    import tracemalloc

    client = _boto3_client(spec)
    client.list_buckets()
    idle = _hwm_mib()
    tracemalloc.start()
    t0 = time.perf_counter()
    body = client.get_object(Bucket=spec["bucket"], Key=spec["key"])["Body"]
    with open(spec["file"], "wb") as out:
        shutil.copyfileobj(body, out, MiB)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    size = Path(spec["file"]).stat().st_size
    return {
        "seconds": seconds,
        "raw_bytes": size,
        "stored_bytes": size,
        "rss_peak_mib": _hwm_mib(),
        "rss_peak_getrusage_mib": _rss_mib(),
        "rss_idle_mib": idle,
        "tracemalloc_peak_mib": peak / MiB,
    }


WORKERS = {
    "baseline-get": worker_baseline_get,
    "stream": worker_stream,
    "upload": worker_upload,
    "baseline-upload": worker_baseline_upload,
    "download": worker_download,
    "baseline-download": worker_baseline_download,
}


def run_worker(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one worker in a fresh process; its JSON result (or ``failure``)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.backup", "--worker", json.dumps({"kind": kind, **spec})],
        cwd=BENCH_DIR.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CMD_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        return {"failure": (proc.stderr.strip() or proc.stdout.strip())[-2000:]}
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# ---------------------------------------------------------------------------------------------
# the S3 server and the members


@contextlib.contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    """moto in server mode on a free loopback port (any credentials accepted)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "moto.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        delay = 0.02
        while not port_open("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start on {url}:\n{tail(log_path)}")
            time.sleep(delay)  # a poll interval
            delay = min(delay * 2, 0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def fill(endpoint: str, total_bytes: int, value_size: int) -> tuple[int, float]:
    """Put ``total_bytes`` of values into the member; (keys written, seconds)."""
    import grpc
    from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

    count = max(1, total_bytes // value_size)
    half = value_size // 2

    async def run() -> None:
        async with grpc.aio.insecure_channel(
            endpoint, options=[("grpc.max_send_message_length", 64 * MiB)]
        ) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            queue = iter(range(count))

            async def put_all() -> None:
                for i in queue:
                    value = os.urandom(half) + bytes(value_size - half)
                    await kv.Put(
                        rpc_pb2.PutRequest(key=f"/bench/{i:08d}".encode(), value=value),
                        timeout=120,
                    )

            await asyncio.gather(*(put_all() for _ in range(FILL_CONCURRENCY)))

    t0 = time.perf_counter()
    asyncio.run(run())
    return count, time.perf_counter() - t0


def restore_cmd(tool: Path, snapshot: Path, data_dir: Path) -> list[str]:
    peer = f"http://127.0.0.1:{free_port()}"
    return [
        str(tool),
        "snapshot",
        "restore",
        str(snapshot),
        "--name=restored",
        f"--initial-cluster=restored={peer}",
        "--initial-cluster-token=restored-token",
        f"--initial-advertise-peer-urls={peer}",
        f"--data-dir={data_dir}",
    ]


# ---------------------------------------------------------------------------------------------
# measurements and the report


@dataclass
class FlavourResult:
    flavour: str
    keys: int = 0
    fill_seconds: float = 0.0
    db_bytes: int = 0
    snapshot_bytes: int = 0
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure: str | None = None


def db_size(member: Member) -> int:
    return sum(p.stat().st_size for p in member.data_dir.rglob("db") if p.is_file())


def delete_object(s3: str, bucket: str, key: str) -> None:
    with contextlib.suppress(Exception):
        _boto3_client({"s3": s3}).delete_object(Bucket=bucket, Key=key)


def median_run(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median seconds (the lower middle one), with every run's seconds."""
    ok = sorted((r for r in results if "failure" not in r), key=lambda r: float(r["seconds"]))
    if not ok:
        return results[-1]
    return {**ok[(len(ok) - 1) // 2], "runs_seconds": [r.get("seconds") for r in results]}


def measure_flavour(
    flavour: Flavour,
    workdir: Path,
    s3: str,
    bucket: str,
    *,
    size: int,
    value_size: int,
    repeat: int,
) -> FlavourResult:
    res = FlavourResult(flavour)
    quota = max(2 * 1024 * MiB, int(size * 1.5) + 512 * MiB)
    member = Member(
        flavour,
        workdir / flavour,
        name=f"bench-{flavour}",
        extra_flags=[f"--quota-backend-bytes={quota}"],
    )
    steps = res.steps
    try:
        member.start_and_wait(START_TIMEOUT)
        print(f"[{flavour}] filling to {size / MB:.0f} MB ...", flush=True)
        res.keys, res.fill_seconds = fill(member.host_port, size, value_size)
        res.db_bytes = db_size(member)
        took = f"{res.keys} keys in {res.fill_seconds:.1f}s"
        print(f"[{flavour}] {took}, db {res.db_bytes / MB:.0f} MB", flush=True)
        spec = {"endpoint": member.host_port, "s3": s3, "bucket": bucket}
        files = workdir / f"{flavour}-files"
        files.mkdir()

        runs: dict[str, list[dict[str, Any]]] = {}

        def record(name: str, result: dict[str, Any]) -> None:
            runs.setdefault(name, []).append(result)
            took = _fmt(_get(result, "seconds"), ".2f")
            print(f"[{flavour}] {name} round {len(runs[name])}: {took} s", flush=True)

        saved = files / "etcdctl.db"
        for _ in range(repeat):
            record("stream-only", run_worker("stream", spec))
            for c in ("none", "zstd"):
                record(
                    f"backup-{c}",
                    run_worker("upload", {**spec, "key": f"{flavour}/{c}", "compression": c}),
                )
            record(
                "baseline-backup",
                run_worker(
                    "baseline-upload", {**spec, "key": f"{flavour}/baseline", "file": str(saved)}
                ),
            )
            res.snapshot_bytes = int(runs["baseline-backup"][-1].get("raw_bytes", 0))
            saved.unlink(missing_ok=True)
            delete_object(s3, bucket, f"{flavour}/baseline")
        member.stop()  # downloads and restores do not need it: free its memory and CPU

        base_file = files / "baseline-download.db"
        downloaded = files / "download-none.db"
        for _ in range(repeat):
            for c in ("none", "zstd"):
                dest = files / f"download-{c}.db"
                record(
                    f"download-{c}",
                    run_worker("download", {**spec, "key": f"{flavour}/{c}", "file": str(dest)}),
                )
                if c == "zstd":
                    dest.unlink(missing_ok=True)
            record(
                "baseline-download",
                run_worker(
                    "baseline-download", {**spec, "key": f"{flavour}/none", "file": str(base_file)}
                ),
            )
            got = files / "baseline-get.db"
            record(
                "baseline-get",
                run_worker("baseline-get", {**spec, "key": f"{flavour}/none", "file": str(got)}),
            )
            got.unlink(missing_ok=True)
            for tool, snapshot in (("pyetcdutl", downloaded), ("etcdctl", base_file)):
                data_dir = files / f"restored-{tool}"
                binary = PYETCDUTL_BIN if tool == "pyetcdutl" else ETCDCTL_BIN
                record(f"restore-{tool}", run_measured(restore_cmd(binary, snapshot, data_dir)))
                shutil.rmtree(data_dir, ignore_errors=True)
        for c in ("none", "zstd"):
            delete_object(s3, bucket, f"{flavour}/{c}")
        for name, results in runs.items():
            steps[name] = median_run(results)
        shutil.rmtree(files, ignore_errors=True)
    except Exception as exc:  # a failed flavour is reported, the other still runs
        res.failure = f"{type(exc).__name__}: {exc}"
        print(f"[{flavour}] failed: {res.failure}", file=sys.stderr, flush=True)
    finally:
        member.stop()
    for name, step in steps.items():
        if "failure" in step:
            print(f"[{flavour}] {name} failed: {step['failure']}", file=sys.stderr, flush=True)
    return res


def _get(step: dict[str, Any] | None, key: str) -> float | None:
    if not step or "failure" in step or key not in step:
        return None
    return float(step[key])


def _sum(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}"


@dataclass(frozen=True)
class Side:
    """One side of a table row: seconds, peak RSS and tracemalloc peak (MiB), any unknown."""

    seconds: float | None = None
    rss: float | None = None
    traced: float | None = None

    @classmethod
    def of(cls, step: dict[str, Any] | None, rss_key: str = "rss_peak_mib") -> Side:
        return cls(_get(step, "seconds"), _get(step, rss_key), _get(step, "tracemalloc_peak_mib"))


def _mbs(raw: int | None, seconds: float | None) -> float | None:
    return None if seconds is None or not raw or seconds <= 0 else raw / MB / seconds


def _row(flavour: str, op: str, raw: int | None, lib: Side, base: Side) -> str:
    cells = [
        flavour,
        op,
        _fmt(lib.seconds),
        _fmt(_mbs(raw, lib.seconds)),
        _fmt(lib.rss, ".0f"),
        _fmt(lib.traced),
        _fmt(base.seconds),
        _fmt(_mbs(raw, base.seconds)),
        _fmt(base.rss, ".0f"),
        _ratio(lib.seconds, base.seconds),
        _ratio(lib.rss, base.rss),
    ]
    return "| " + " | ".join(cells) + " |"


TABLE_HEAD = (
    "| server | operation | library s | MB/s | peak RSS MiB | tracemalloc MiB "
    "| baseline s | MB/s | peak RSS MiB | ratio s | ratio RSS |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def report(results: Sequence[FlavourResult]) -> str:
    """One markdown table: rows per flavour and operation, library against baseline."""
    rows = [TABLE_HEAD]
    for res in results:
        raw, s, name = res.snapshot_bytes or None, res.steps, res.flavour
        base_up = s.get("baseline-backup")
        base_dl = Side.of(s.get("baseline-download"))
        lib_rs = Side.of(s.get("restore-pyetcdutl"))
        base_rs = Side.of(s.get("restore-etcdctl"))
        for c in ("none", "zstd"):
            step = s.get(f"backup-{c}")
            stored = _get(step, "stored_bytes")
            label = f"backup {c}"
            if c != "none" and stored is not None and raw:
                label += f" ({stored / raw:.0%} stored)"
            rows.append(_row(name, label, raw, Side.of(step), Side.of(base_up)))
        stream = Side.of(s.get("stream-only"))
        rows.append(_row(name, "(snapshot stream alone, no S3)", raw, stream, Side()))
        upload_s = _get(base_up, "upload_seconds")
        split = (
            f"(baseline split: etcdctl save, RSS of etcdctl; then upload_file {_fmt(upload_s)} s"
            f" = {_fmt(_mbs(raw, upload_s))} MB/s)"
        )
        save = Side(_get(base_up, "save_seconds"), _get(base_up, "etcdctl_rss_peak_mib"))
        rows.append(_row(name, split, raw, Side(), save))
        for c in ("none", "zstd"):
            rows.append(_row(name, f"download {c}", raw, Side.of(s.get(f"download-{c}")), base_dl))
        rows.append(
            _row(
                name,
                "(download baseline 2: one GetObject to a file)",
                raw,
                Side(),
                Side.of(s.get("baseline-get")),
            )
        )
        rows.append(_row(name, "snapshot restore (pyetcdutl / etcdctl)", raw, lib_rs, base_rs))
        for c in ("none", "zstd"):
            lib_total = _sum(_get(s.get(f"download-{c}"), "seconds"), lib_rs.seconds)
            base_total = _sum(base_dl.seconds, base_rs.seconds)
            rows.append(
                _row(name, f"download {c} + restore", raw, Side(lib_total), Side(base_total))
            )
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.backup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--size", type=int, default=1000, help="database size to fill, in MB (default 1000)"
    )
    parser.add_argument(
        "--value-size", type=int, default=MiB, help="bytes per value (default 1 MiB)"
    )
    parser.add_argument(
        "--flavours",
        default=os.environ.get("BENCH_FLAVOURS", "etcd,pyetcd"),
        help="comma-separated flavours, measured in turn (default etcd,pyetcd)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of each measurement; the median is shown"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(WORKERS[spec["kind"]](spec)))
        return 0
    flavours = [as_flavour(f.strip()) for f in args.flavours.split(",") if f.strip()]
    size = args.size * MB
    began = time.time()
    results: list[FlavourResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        workdir = Path(tmp)
        with moto_server(workdir) as s3:
            bucket = "bench-backups"
            _boto3_client({"s3": s3}).create_bucket(Bucket=bucket)
            for flavour in flavours:
                results.append(
                    measure_flavour(
                        flavour,
                        workdir,
                        s3,
                        bucket,
                        size=size,
                        value_size=args.value_size,
                        repeat=args.repeat,
                    )
                )
    table = report(results)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(began))
    out = args.results_dir / f"{stamp}-backup.json"
    out.write_text(
        json.dumps(
            {
                "started": stamp,
                "size_mb": args.size,
                "value_size": args.value_size,
                "repeat": args.repeat,
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "results": [asdict(r) for r in results],
                "table": table,
            },
            indent=2,
        )
    )
    print()
    print(f"database ~{args.size} MB, {args.value_size} B values; ratio = library / baseline")
    print(table)
    for r in results:
        idle = ", ".join(
            f"{name} {_fmt(_get(step, 'rss_idle_mib'), '.0f')}"
            for name, step in r.steps.items()
            if "rss_idle_mib" in step
        )
        print(
            f"{r.flavour}: {r.keys} keys filled in {r.fill_seconds:.1f}s, snapshot "
            f"{r.snapshot_bytes / MB:.0f} MB; peak RSS MiB of each worker after its imports: {idle}"
        )
        for c in ("none", "zstd"):
            calls = r.steps.get(f"backup-{c}", {}).get("s3_seconds")
            if calls:
                spent = ", ".join(f"{op} {t:.1f}" for op, t in calls.items())
                print(f"  {r.flavour} backup {c}: seconds in S3 calls (worker threads): {spent}")
    print(f"\nresults written to {out}")
    failed = any(r.failure or any("failure" in step for step in r.steps.values()) for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
