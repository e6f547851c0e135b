"""Streaming: analysing a db does not hold its values. A child process reads a db of 60 MB of
values (few keys, long history) through the real reader, and its peak memory must stay far
below the size of the values; the same process that only imports the code is the baseline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pyetcd.backend.bbolt import BoltBackend

from tests.unit.analyze.records import put

VALUE = 20_000
WRITES = 3_000  # 60 MB of values over 30 keys

# VmHWM (this process image's peak RSS), not getrusage's ru_maxrss, which a child started by
# fork and exec inherits from the (larger) pytest process.
CHILD = """
import re, sys
from pyetcd.analyze import Options, read_report
from pyetcd.analyze.report import Source
if sys.argv[1] == "analyze":
    report = read_report(sys.argv[2], source=Source(sys.argv[2], "db", sys.argv[2], "absent"),
                         options=Options())
    assert report.analysis.totals.revisions == int(sys.argv[3]), report.analysis.totals
with open("/proc/self/status") as f:
    print(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1))
"""


def _peak_kib(*args: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_peak_memory_does_not_grow_with_the_values(tmp_path: Path) -> None:
    db = tmp_path / "db"
    with BoltBackend(str(db)) as b:
        b.create_bucket(b"key")
        for i in range(WRITES):
            k, v = put(2 + i, b"/hot/%02d" % (i % 30), b"v" * VALUE, version=1 + i // 30)
            b.put(b"key", k, v, seq=True)
            if i % 500 == 0:
                b.commit()
        b.commit()
    assert db.stat().st_size > WRITES * VALUE
    a, b0 = _peak_kib("analyze", str(db), str(WRITES)), _peak_kib("baseline")
    print("PEAKS", a, b0)
    growth_mib = (a - b0) / 1024
    # Holding the values (or re-parsing into one protobuf message, whose arena keeps every
    # value parsed) costs 60 MB or more; streaming costs a few pages and 30 keys.
    assert growth_mib < 15, f"peak memory grew by {growth_mib:.0f} MiB"
