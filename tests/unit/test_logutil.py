"""pyetcd.logutil: etcd's zap JSON lines and the console lines, from Python log records."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyetcd import logutil
from pyetcd.logutil import ConsoleFormatter, ZapJSONFormatter, fields

# etcd 3.5's layout "2006-01-02T15:04:05.000000Z0700".
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d{4})$")


def record(
    msg: str,
    *args: object,
    level: int = logging.INFO,
    name: str = "pyetcd",
    extra: dict[str, object] | None = None,
    exc: BaseException | None = None,
) -> logging.LogRecord:
    rec = logging.LogRecord(
        name,
        level,
        "/src/server/pyetcd/api/serve.py",
        44,
        msg,
        args,
        (type(exc), exc, exc.__traceback__) if exc is not None else None,
    )
    for key, value in (extra or {}).items():
        setattr(rec, key, value)
    return rec


def as_json(rec: logging.LogRecord) -> dict[str, object]:
    line = ZapJSONFormatter().format(rec)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_a_line_has_zap_s_keys_in_zap_s_order_then_the_fields() -> None:
    rec = record(
        "serving client traffic securely",
        extra=fields({"traffic": "grpc+http"}, address="127.0.0.1:2379"),
    )
    line = as_json(rec)
    assert list(line) == ["level", "ts", "caller", "msg", "traffic", "address"]
    assert line["level"] == "info"
    assert TS.match(str(line["ts"])), line["ts"]
    assert line["caller"] == "api/serve.py:44"
    assert line["msg"] == "serving client traffic securely"
    assert line["address"] == "127.0.0.1:2379"


def test_the_message_is_formatted_with_its_arguments() -> None:
    assert as_json(record("auto-compacting to revision %d", 42))["msg"] == (
        "auto-compacting to revision 42"
    )


@pytest.mark.parametrize(
    ("level", "name"),
    [
        (logging.DEBUG, "debug"),
        (logging.INFO, "info"),
        (logging.WARNING, "warn"),
        (logging.ERROR, "error"),
        (logging.CRITICAL, "panic"),
        (logutil.FATAL, "fatal"),
    ],
)
def test_python_levels_map_to_zap_s_names(level: int, name: str) -> None:
    assert as_json(record("m", level=level))["level"] == name
    # And back: --log-level's names select the same threshold.
    assert logutil.python_level(name) == level


def test_time_is_etcd_s_layout_in_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    created = 1796610600.123456  # 2026-12-07T02:30:00.123456Z
    try:
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
        assert logutil.zap_time(created) == "2026-12-07T02:30:00.123456Z"
        monkeypatch.setenv("TZ", "Asia/Kolkata")
        time.tzset()
        assert logutil.zap_time(created) == "2026-12-07T08:00:00.123456+0530"
        monkeypatch.setenv("TZ", "America/New_York")
        time.tzset()
        assert logutil.zap_time(created) == "2026-12-06T21:30:00.123456-0500"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_an_exception_goes_into_error_and_stacktrace_never_across_lines() -> None:
    try:
        _ = 1 / 0
    except ZeroDivisionError as exc:
        rec = record("apply failed:\nsecond line", level=logging.ERROR, exc=exc)
    line = as_json(rec)
    assert line["msg"] == "apply failed:\nsecond line"
    assert line["error"] == "division by zero"
    stack = str(line["stacktrace"])
    assert stack.startswith("Traceback (most recent call last):")
    assert stack.endswith("ZeroDivisionError: division by zero")
    assert list(line)[-2:] == ["error", "stacktrace"]


def test_stack_info_is_a_stacktrace_too() -> None:
    rec = record("where", extra={"stack_info": "Stack (most recent call last):\n  frame"})
    assert as_json(rec)["stacktrace"] == "Stack (most recent call last):\n  frame"


def test_a_library_record_names_its_logger_and_pyetcd_s_do_not() -> None:
    assert as_json(record("m", name="grpc._cython.cygrpc"))["logger"] == "grpc._cython.cygrpc"
    assert "logger" not in as_json(record("m", name="pyetcd.server.etcdserver"))
    assert "logger" not in as_json(record("m", name="pyetcd"))
    # A logger merely starting with the same letters is not pyetcd's.
    assert as_json(record("m", name="pyetcdx"))["logger"] == "pyetcdx"


def test_fields_cannot_replace_the_entry_s_own_keys_and_any_value_is_written() -> None:
    rec = record("real", extra=fields({"msg": "fake", "level": "fatal"}, obj=object(), n=3))
    line = as_json(rec)
    assert (line["msg"], line["level"], line["n"]) == ("real", "info", 3)
    assert str(line["obj"]).startswith("<object object")


def test_non_ascii_is_written_as_utf8_like_zap() -> None:
    line = ZapJSONFormatter().format(record("café", extra=fields(path="/données")))
    assert '"msg":"café"' in line and '"path":"/données"' in line


def test_console_lines_keep_pyetcd_s_format_and_append_the_fields() -> None:
    rec = record("ready to serve client requests", name="pyetcd.api")
    line = ConsoleFormatter().format(rec)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO pyetcd.api: ready to serve client requests",
        line,
    ), line
    rec = record("serving peer traffic", extra=fields(address="127.0.0.1:2380"))
    assert (
        ConsoleFormatter()
        .format(rec)
        .endswith('INFO pyetcd: serving peer traffic {"address": "127.0.0.1:2380"}')
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (7, "7s"),
        (6.5, "6.5s"),
        (0.1, "100ms"),
        (0.0015, "1.5ms"),
        (0.000002, "2µs"),
        (120, "2m0s"),
        (3723.5, "1h2m3.5s"),
    ],
)
def test_durations_read_as_go_prints_them(seconds: float, text: str) -> None:
    assert logutil.go_duration(seconds) == text


def test_short_caller_is_the_directory_and_file() -> None:
    assert logutil.short_caller("/a/b/server/etcdserver.py", 7) == "server/etcdserver.py:7"
    assert logutil.short_caller("serve.py", 3) == "serve.py:3"


def test_the_sampler_passes_the_first_100_then_every_100th_per_message_and_second() -> None:
    now = [10.0]
    sampler = logutil.Sampler(clock=lambda: now[0])
    passed = [sampler.filter(record("flood")) for _ in range(450)]
    assert passed[:100] == [True] * 100
    assert [i + 1 for i, ok in enumerate(passed) if ok][100:] == [200, 300, 400]
    # Another message, or the same at another level, has its own count.
    assert sampler.filter(record("other"))
    assert sampler.filter(record("flood", level=logging.WARNING))
    # Arguments make the message: zap samples the final text.
    assert sampler.filter(record("n=%d", 1))
    # A panic always passes.
    assert sampler.filter(record("flood", level=logging.CRITICAL))
    # The next second starts again.
    now[0] = 11.0
    assert all(sampler.filter(record("flood")) for _ in range(100))
    assert not sampler.filter(record("flood"))


# -- configure: the root logger and its outputs ------------------------------------------------


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = (sys.excepthook, threading.excepthook)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            if handler not in handlers:
                handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)
        sys.excepthook, threading.excepthook = hooks


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.usefixtures("root_restored")
def test_configure_writes_every_logger_s_records_to_each_file_from_the_level(
    tmp_path: Path,
) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text('{"earlier":"line"}\n')
    logutil.configure([str(a), str(b)], "warn", "json")
    logging.getLogger("pyetcd.server").info("below the level")
    logging.getLogger("pyetcd.server").warning("kept", extra=fields(n=1))
    logging.getLogger("asyncio").error("from a library")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful", DeprecationWarning, stacklevel=1)
    for _ in range(250):
        logging.getLogger("pyetcd").warning("flooding")
    got = lines(b)
    # Sampled (zap's 100 a second, then every 100th): even split across two seconds, at most
    # 200 of 250 pass.
    assert 100 <= sum(g["msg"] == "flooding" for g in got) <= 200
    assert [(g["level"], g["msg"]) for g in got[:2]] == [
        ("warn", "kept"),
        ("error", "from a library"),
    ]
    assert got[1]["logger"] == "asyncio"
    assert got[2]["logger"] == "py.warnings" and "careful" in str(got[2]["msg"])
    # Appended, as zap opens files (O_APPEND), never truncated.
    assert lines(a)[0] == {"earlier": "line"}
    assert lines(a)[1:] == got


@pytest.mark.usefixtures("root_restored")
def test_configure_logs_an_uncaught_exception_as_one_json_line(tmp_path: Path) -> None:
    out = tmp_path / "log"
    logutil.configure([str(out)], "info", "json")
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    thread = threading.Thread(target=lambda: 1 / 0, name="worker")
    thread.start()
    thread.join()
    got = lines(out)
    assert (got[0]["level"], got[0]["msg"], got[0]["error"]) == (
        "fatal",
        "uncaught exception",
        "boom",
    )
    assert (got[1]["level"], got[1]["thread"], got[1]["error"]) == (
        "error",
        "worker",
        "division by zero",
    )


@pytest.mark.usefixtures("root_restored")
def test_configure_fails_on_an_unopenable_file_before_changing_anything(
    tmp_path: Path,
) -> None:
    before = list(logging.getLogger().handlers)
    with pytest.raises(OSError, match="No such file"):
        logutil.configure(["stderr", str(tmp_path / "missing" / "x.log")], "info", "json")
    assert logging.getLogger().handlers == before


@pytest.mark.usefixtures("root_restored")
def test_configure_writes_to_stdout_and_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    logutil.configure(["stderr", "stdout"], "info", "console")
    logging.getLogger("pyetcd").info("both", extra=fields(n=1))
    out, err = capsys.readouterr()
    assert out.endswith('INFO pyetcd: both {"n": 1}\n') and out.count("\n") == 1
    assert err == out


def test_stderr_outputs() -> None:
    assert logutil.writes_to_stderr(["default"])
    assert logutil.writes_to_stderr(["/x", "stderr"])
    assert not logutil.writes_to_stderr(["stdout", "/x"])
