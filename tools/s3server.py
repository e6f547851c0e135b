"""S3 servers on loopback for the tests, the e2e suite and the demo: moto in server mode and the
Versity S3 gateway (versitygw, built from the Go module proxy by ``tools.versitygw``).

Each runner is a context manager that starts the server on a free port, waits until it accepts
connections, yields an ``S3Server`` (its URL, an admin user that may do anything in S3 and a
valid user without any permission), and stops it. moto starts with authentication off; its IAM
users are created first and then authentication is switched on, so that every later request's
signature and permissions are checked, as a real S3 does. A server that does not start raises
``S3ServerError`` with the tail of its log; the callers turn it into a test failure or a demo
error message.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3.session
from etcd_operator.backup import Credentials, StoreSettings, make_client

from tools import versitygw as versitygw_build
from tools.ports import free_port

REGION = "us-east-1"
START_TIMEOUT = 30.0
LOG_LINES = 40


class S3ServerError(RuntimeError):
    """An S3 server could not be started; the message says why and what to do."""


@dataclass(frozen=True)
class S3Server:
    """A running S3 server: its name, URL and the credentials of its users."""

    name: str  # "moto" or "versitygw"
    url: str
    admin: Credentials  # may do anything in S3
    nobody: Credentials  # a valid user without any permission on the buckets
    pid: int | None = None  # the server's process

    def client(self, creds: Credentials | None = None) -> Any:
        """A plain boto3 client (for a test's own listing and tampering)."""
        client: Any = make_client(self.store("unused", creds))
        return client

    def store(self, bucket: str, creds: Credentials | None = None) -> StoreSettings:
        return StoreSettings(
            bucket=bucket,
            prefix="ns/demo",
            endpoint=self.url,
            region=REGION,
            force_path_style=True,
            credentials=creds or self.admin,
            max_attempts=2,
            connect_timeout=2.0,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-LOG_LINES:])
    except FileNotFoundError:
        return ""


@dataclass(frozen=True)
class Serving:
    url: str
    pid: int


@contextlib.contextmanager
def serving(
    name: str, cmd: list[str], port: int, log_path: Path, env: dict[str, str] | None = None
) -> Iterator[Serving]:
    """Run ``cmd`` (a server listening on ``port`` on loopback) until the block ends."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            env=env,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.02
        while not _port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise S3ServerError(f"{name} did not start on {url}:\n{_tail(log_path)}")
            time.sleep(delay)  # a poll interval, not a synchronisation sleep
            delay = min(delay * 2, 0.25)
        yield Serving(url, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _moto_setup_client(url: str, service: str) -> Any:
    # Before auth is switched on, moto accepts any credentials.
    session = boto3.session.Session(
        aws_access_key_id="setup", aws_secret_access_key="setup", region_name=REGION
    )
    return session.client(service, endpoint_url=url)


def _iam_user(iam: Any, name: str, policy: dict[str, Any] | None) -> Credentials:
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="backup", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


@contextlib.contextmanager
def moto_server(base: Path, host: str = "127.0.0.1", port: int | None = None) -> Iterator[S3Server]:
    """moto in server mode on ``host`` (a free port unless given), with IAM users and auth
    switched on."""
    if importlib.util.find_spec("moto.server") is None or importlib.util.find_spec("flask") is None:
        raise S3ServerError(
            f"moto's S3 server is not installed in {sys.executable}: run `make setup` "
            "(pip install -e '.[dev]', which pulls in moto[server])"
        )
    port = port or free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]
    with serving("moto server", cmd, port, base / "moto.log") as served:
        url = served.url
        iam = _moto_setup_client(url, "iam")
        allow_s3 = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        admin = _iam_user(iam, "backup-admin", allow_s3)
        nobody = _iam_user(iam, "backup-nobody", None)
        # From now on moto checks every request's signature and the user's IAM policies.
        request = urllib.request.Request(
            f"{url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            if resp.status != 200:
                raise S3ServerError(f"moto did not switch authentication on: {resp.status}")
        yield S3Server(name="moto", url=url, admin=admin, nobody=nobody, pid=served.pid)


def versitygw_binary() -> Path:
    """The Versity S3 gateway (VERSITYGW_BIN, else the cached build)."""
    override = os.environ.get("VERSITYGW_BIN")
    path = Path(override) if override else versitygw_build.cached_binary()
    if path is None or not (path.is_file() and os.access(path, os.X_OK)):
        where = override or versitygw_build.binary_path()
        raise S3ServerError(
            f"versitygw {versitygw_build.VERSITYGW_VERSION} not found at {where}; "
            f"{versitygw_build.HINT}"
        )
    return path


@contextlib.contextmanager
def versitygw_server(base: Path) -> Iterator[S3Server]:
    """versitygw's POSIX backend on a free loopback port: its root account is the admin, and a
    plain "user" account of its internal IAM (users.json, written before the start) owns no
    bucket and has no grant on any, so everything it does on the admin's buckets is denied."""
    binary = versitygw_binary()
    admin = Credentials(f"VGWADMIN{uuid.uuid4().hex[:12].upper()}", uuid.uuid4().hex * 2)
    nobody = Credentials(f"VGWNOBODY{uuid.uuid4().hex[:11].upper()}", uuid.uuid4().hex * 2)
    iam_dir, data_dir = base / "iam", base / "data"
    iam_dir.mkdir()
    data_dir.mkdir()
    account = {"access": nobody.access_key_id, "secret": nobody.secret_access_key, "role": "user"}
    (iam_dir / "users.json").write_text(
        json.dumps({"accessAccounts": {nobody.access_key_id: account}})
    )
    port = free_port()
    cmd = [
        str(binary),
        "--access",
        admin.access_key_id,
        "--secret",
        admin.secret_access_key,
        "--region",
        REGION,
        "--port",
        f"127.0.0.1:{port}",
        "--iam-dir",
        str(iam_dir),
        "posix",
        str(data_dir),
    ]
    # VGW_* variables would configure it behind the command line's back.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGW_")}
    with serving("versitygw", cmd, port, base / "versitygw.log", env) as served:
        yield S3Server(name="versitygw", url=served.url, admin=admin, nobody=nobody, pid=served.pid)
