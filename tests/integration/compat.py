"""Scenario runner of the etcdctl compatibility suite: steps, execution, comparison.

A scenario is a list of steps run in order against one fresh member. A step is one etcdctl
invocation (:class:`Run`), a background ``etcdctl watch`` around other steps (:class:`Watch`), or
a command repeated until its output matches (:class:`Until`, e.g. waiting for a lease to expire).
Arguments and stdin are templates: ``{base+2}`` is the run's base revision plus two (the
revision of the second write), ``{dir}`` the member's work dir, and ``{name}`` any value captured
by an earlier step (``capture={"lease": r"lease (\\w+) granted"}``).

Each step yields normalised ``(stdout, stderr, exit code)`` (see ``normalize.py``), and whether
it met its own expectation (exit code zero or not); two runs are compared step by step.
"""

from __future__ import annotations

import difflib
import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tests.integration.cluster import Member
from tests.integration.normalize import (
    Context,
    normalize_protobuf,
    normalize_stderr,
    normalize_stdout,
    write_out,
)

STEP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Run:
    """One ``etcdctl`` invocation."""

    args: tuple[str, ...]
    stdin: str | None = None
    fails: bool = False
    capture: Mapping[str, str] = field(default_factory=dict)
    label: str = ""

    @property
    def title(self) -> str:
        return self.label or " ".join(self.args)


@dataclass(frozen=True)
class Watch:
    """``etcdctl watch *args`` in the background while ``during`` runs; then read ``lines``."""

    args: tuple[str, ...]
    during: tuple[Run, ...]
    lines: int
    exits: bool = False  # the watch ends by itself (e.g. compacted start revision)
    timeout: float = 15.0
    label: str = ""

    @property
    def title(self) -> str:
        return self.label or "watch " + " ".join(self.args)


@dataclass(frozen=True)
class Until:
    """Repeat ``run`` until its raw stdout matches ``pattern`` (or the deadline passes)."""

    run: Run
    pattern: str
    timeout: float = 15.0
    label: str = ""

    @property
    def title(self) -> str:
        return self.label or f"until /{self.pattern}/: {self.run.title}"


Step = Run | Watch | Until


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]
    flags: tuple[str, ...] = ()
    # Compared with etcd 3.5 (built by ``make etcd35``) rather than Debian's 3.4, through its
    # etcdctl 3.5: for behaviour that changed in 3.5, which pyetcd speaks (e.g. auth: Status
    # needs a user since 3.5, ``auth status``).
    etcd35: bool = False


@dataclass
class Outcome:
    """The normalised result of one step (watch: its own output then each inner step's)."""

    title: str
    stdout: str
    stderr: str
    code: int | None
    problem: str | None = None  # the step's own expectation failed

    def render(self) -> str:
        return f"exit code: {self.code}\n--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"


_TEMPLATE_RE = re.compile(r"\{(?P<name>[a-z_][a-z0-9_]*)(?:(?P<op>[+-])(?P<num>\d+))?\}")


class Runner:
    """Runs a scenario against one member, normalising as it goes."""

    def __init__(self, member: Member) -> None:
        self.member = member
        self.ctx = Context()
        self.ctx.add_replacement(str(member.workdir), "<dir>")
        self.ctx.add_replacement(member.host_port, "<client>")
        self.ctx.add_replacement(member.peer_url.removeprefix("http://"), "<peer>")
        self.vars: dict[str, str] = {"dir": str(member.workdir)}
        self.outcomes: list[Outcome] = []

    # -- templating ------------------------------------------------------------------------
    def expand(self, text: str) -> str:
        def sub(match: re.Match[str]) -> str:
            name = match["name"]
            if name not in self.vars:
                raise KeyError(f"template variable {name!r} not captured yet (in {text!r})")
            value = self.vars[name]
            if match["op"] is None:
                return value
            delta = int(match["num"]) * (1 if match["op"] == "+" else -1)
            return str(int(value) + delta)

        return _TEMPLATE_RE.sub(sub, text)

    # -- execution -------------------------------------------------------------------------
    def establish_base(self) -> None:
        """Record the revision of the fresh server before the first write."""
        result = self.member.etcdctl("get", "compat-base-probe", "-w", "json")
        if result.returncode != 0:
            raise AssertionError(f"cannot read the base revision: {result.stderr}")
        base = int(json.loads(result.stdout)["header"]["revision"])
        self.vars["base"] = str(base)
        self.ctx.base_revision = base

    def run_scenario(self, scenario: Scenario) -> list[Outcome]:
        self.establish_base()
        for step in scenario.steps:
            if isinstance(step, Run):
                self.outcomes.append(self.run(step))
            elif isinstance(step, Watch):
                self.outcomes.extend(self.watch(step))
            else:
                self.outcomes.append(self.until(step))
        return self.outcomes

    def _execute(self, step: Run) -> tuple[list[str], str, str, int, str]:
        """Run a step; return (expanded args, raw stdout, normalised stdout, code, norm stderr)."""
        args = [self.expand(a) for a in step.args]
        stdin = self.expand(step.stdin) if step.stdin is not None else None
        binary = write_out(args) == "protobuf"
        result = self.member.etcdctl_bytes(
            *args, input=stdin.encode() if stdin is not None else None, timeout=STEP_TIMEOUT
        )
        raw = result.stdout.decode(errors="replace")
        if binary and result.returncode == 0:
            stdout = normalize_protobuf(self.ctx, args, result.stdout)
        else:
            stdout = normalize_stdout(self.ctx, args, raw)
        stderr = normalize_stderr(self.ctx, result.stderr.decode(errors="replace"))
        return args, raw, stdout, result.returncode, stderr

    def _capture(self, step: Run, raw: str) -> str | None:
        for name, pattern in step.capture.items():
            match = re.search(pattern, raw)
            if match is None:
                return f"capture {name!r}: /{pattern}/ not found in stdout"
            self.vars[name] = match.group(1)
        return None

    def run(self, step: Run) -> Outcome:
        _args, raw, stdout, code, stderr = self._execute(step)
        problem = _expectation(step, code)
        if problem is None:
            problem = self._capture(step, raw)
        return Outcome(step.title, stdout, stderr, code, problem)

    def until(self, step: Until) -> Outcome:
        deadline = time.monotonic() + step.timeout
        delay = 0.05
        while True:
            _args, raw, stdout, code, stderr = self._execute(step.run)
            if re.search(step.pattern, raw):
                return Outcome(step.title, stdout, stderr, code, _expectation(step.run, code))
            if time.monotonic() >= deadline:
                problem = f"output never matched /{step.pattern}/ within {step.timeout}s"
                return Outcome(step.title, stdout, stderr, code, problem)
            time.sleep(delay)  # poll interval while waiting for a server-side timer
            delay = min(delay * 2, 0.5)

    def watch(self, step: Watch) -> list[Outcome]:
        args = ["watch", *(self.expand(a) for a in step.args)]
        proc = self.member.etcdctl_popen(*args)
        reader = _LineReader(proc)
        inner = [self.run(run) for run in step.during]
        got_all = reader.wait_for(step.lines, time.monotonic() + step.timeout)
        exited = False
        if step.exits:
            try:
                proc.wait(timeout=max(0.0, step.timeout))
                exited = True
            except subprocess.TimeoutExpired:
                exited = False
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        reader.join()
        raw = "".join(reader.lines)
        stdout = normalize_stdout(self.ctx, args, raw)
        stderr = normalize_stderr(self.ctx, reader.stderr())
        problem = None
        if not got_all:
            problem = f"watch printed {len(reader.lines)} of {step.lines} lines before deadline"
        elif len(reader.lines) != step.lines:
            problem = f"watch printed {len(reader.lines)} lines, expected {step.lines}"
        elif step.exits and not exited:
            problem = "watch was expected to end by itself"
        code = proc.returncode if step.exits else None  # SIGTERM's code says nothing
        return [Outcome(step.title, stdout, stderr, code, problem), *inner]


def _expectation(step: Run, code: int) -> str | None:
    if step.fails and code == 0:
        return "expected a failure, got exit code 0"
    if not step.fails and code != 0:
        return f"expected success, got exit code {code}"
    return None


class _LineReader:
    """Collects a process's stdout lines in a thread; lets the caller wait for N lines."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._err: list[bytes] = []
        self._cond = threading.Condition()
        self._out_thread = threading.Thread(target=self._read_out, daemon=True)
        self._err_thread = threading.Thread(target=self._read_err, daemon=True)
        self._out_thread.start()
        self._err_thread.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            with self._cond:
                self.lines.append(line.decode(errors="replace"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self._err.append(self.proc.stderr.read())

    def wait_for(self, count: int, deadline: float) -> bool:
        with self._cond:
            while len(self.lines) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._out_thread.is_alive():
                    return len(self.lines) >= count
                self._cond.wait(timeout=remaining)
            return True

    def join(self) -> None:
        self._out_thread.join(timeout=10)
        self._err_thread.join(timeout=10)

    def stderr(self) -> str:
        return b"".join(self._err).decode(errors="replace")


# ---------------------------------------------------------------------------------------------
# comparison


def compare(
    scenario: str,
    flavours: Sequence[str],
    left: Sequence[Outcome],
    right: Sequence[Outcome],
    allowed: Mapping[tuple[str, str], str],
) -> list[str]:
    """Human-readable differences between two runs; empty when they agree.

    ``allowed`` maps ``(scenario, step title)`` to the reason a difference is accepted. An
    allow-listed step that no longer differs is reported too, so the list cannot go stale.
    """
    problems: list[str] = []
    for flavour, outcomes in zip(flavours, (left, right), strict=True):
        for i, outcome in enumerate(outcomes):
            if outcome.problem:
                problems.append(f"[{flavour}] step {i} `{outcome.title}`: {outcome.problem}")
    if len(left) != len(right):
        problems.append(f"different step counts: {len(left)} vs {len(right)}")
    for i, (a, b) in enumerate(zip(left, right, strict=False)):
        key = (scenario, a.title)
        same = (a.stdout, a.stderr, a.code) == (b.stdout, b.stderr, b.code)
        if key in allowed:
            if same:
                problems.append(f"step {i} `{a.title}` is allow-listed but no longer differs")
            continue
        if same:
            continue
        diff = difflib.unified_diff(
            a.render().splitlines(),
            b.render().splitlines(),
            fromfile=flavours[0],
            tofile=flavours[1],
            lineterm="",
        )
        problems.append(f"step {i} `{a.title}` differs:\n" + "\n".join(diff))
    return problems
