"""Micro-benchmark of the bbolt backend's hot paths (a script, not a test).

Run: ``.venv/bin/python tests/unit/backend/bench_backend.py [dir]``. Reports sequential puts/s
(etcd-style 17-byte revision keys, ~200-byte values, a commit every 10k puts), commit times,
point gets/s, 1000-key ranges/s, defrag and reopen time, and the file size.
"""

from __future__ import annotations

import os
import random
import struct
import sys
import tempfile
import time

from pyetcd.backend.bbolt import BoltBackend

REV = struct.Struct(">QcQ")


def rev_key(main: int, sub: int = 0) -> bytes:
    return REV.pack(main, b"_", sub)


def main() -> None:
    n = 100_000
    with tempfile.TemporaryDirectory(dir=sys.argv[1] if len(sys.argv) > 1 else None) as d:
        path = os.path.join(d, "db")
        b = BoltBackend(path)
        b.create_bucket(b"key")
        b.create_bucket(b"meta")
        b.commit()
        rnd = random.Random(0)
        values = [rnd.randbytes(rnd.randint(100, 300)) for _ in range(1000)]
        commit_times: list[tuple[float, float]] = []
        put_time = 0.0
        for base in range(0, n, 10_000):
            t0 = time.perf_counter()
            for i in range(base + 1, base + 10_001):
                b.put(b"key", rev_key(i), values[i % 1000], seq=True)
            b.put(b"meta", b"consistent_index", struct.pack(">Q", base))
            t1 = time.perf_counter()
            pending = b.prepare_commit()
            t2 = time.perf_counter()
            assert pending is not None
            pending.write()
            b.finish_commit(pending)
            t3 = time.perf_counter()
            put_time += t1 - t0
            commit_times.append((t2 - t1, t3 - t2))
        print(f"seq puts: {n / put_time:,.0f}/s (apply only, {put_time:.2f}s)")
        prep = sum(c[0] for c in commit_times) / len(commit_times)
        wr = sum(c[1] for c in commit_times) / len(commit_times)
        print(
            f"commit of 10k puts: prepare {prep * 1e3:.1f} ms, write+2 fdatasync {wr * 1e3:.1f} ms"
        )
        total = put_time + sum(a + c for a, c in commit_times)
        print(f"seq puts incl. commits: {n / total:,.0f}/s")
        keys = [rev_key(rnd.randint(1, n)) for _ in range(100_000)]
        t0 = time.perf_counter()
        for k in keys:
            b.get(b"key", k)
        print(f"gets: {len(keys) / (time.perf_counter() - t0):,.0f}/s")
        t0 = time.perf_counter()
        reps = 200
        for _ in range(reps):
            s = rnd.randint(1, n - 1000)
            got = list(b.range(b"key", rev_key(s), rev_key(s + 1000)))
            assert len(got) == 1000
        dt = (time.perf_counter() - t0) / reps
        print(f"range of 1000 keys: {dt * 1e3:.2f} ms ({reps / (dt * reps):,.0f}/s)")
        print(f"file size {b.size():,} bytes, in use {b.size_in_use():,}")
        b.close()
        t0 = time.perf_counter()
        b = BoltBackend(path)
        print(f"reopen (freelist rebuild, all nodes parsed): {time.perf_counter() - t0:.2f}s")
        t0 = time.perf_counter()
        b.defrag()
        print(f"defrag: {time.perf_counter() - t0:.2f}s, size {b.size():,}")
        b.close()


if __name__ == "__main__":
    main()
