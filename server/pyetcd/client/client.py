"""EtcdClient: etcd's KV, Cluster and Maintenance calls over one ``grpc.aio`` channel per endpoint.

Cluster-wide calls (member list/add/remove/promote, alarms, KV) go to the configured endpoints in
order and move on to the next one only when an endpoint is unreachable, as clientv3's balancer
does; per-member calls (status, health, defragment) go to the endpoint they name, which need not
be one of the configured ones (the operator learns client URLs from the member list).
Every call carries the client's deadline, except the snapshot stream, which may run for minutes
and instead fails when the member sends nothing for a while. gRPC failures surface as
:class:`EtcdClientError`.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import tempfile
import time
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import grpc
from grpc import aio

from pyetcd.client.auth import CHANNEL_OPTIONS, Credentials, authenticated_channel
from pyetcd.client.errors import EtcdClientError, WatchCompactedError
from pyetcd.client.models import (
    AlarmMember,
    AuthStatus,
    EndpointHealth,
    EndpointStatus,
    Member,
    MemberList,
    WatchBatch,
    WatchWindow,
)
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

T = TypeVar("T")

# The key etcdctl reads to probe health: any answer (even "permission denied") proves that the
# member serves linearizable reads, which needs a leader and a quorum.
HEALTH_KEY = b"health"
PERMISSION_DENIED = "etcdserver: permission denied"


def normalize_endpoint(endpoint: str) -> str:
    """``http(s)://host:port`` or ``host:port`` -> ``host:port`` (the gRPC target)."""
    text = endpoint.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"unsupported endpoint scheme in {endpoint!r}: use http://, https:// or host:port"
        )
    if not parts.hostname or parts.port is None:
        raise ValueError(f"endpoint {endpoint!r} needs a host and a port")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port}"


def _member(pb: rpc_pb2.Member) -> Member:
    return Member(
        id=pb.ID,
        name=pb.name,
        peer_urls=tuple(pb.peerURLs),
        client_urls=tuple(pb.clientURLs),
        is_learner=pb.isLearner,
    )


def _key(key: bytes | str) -> bytes:
    return key.encode() if isinstance(key, str) else key


class _Stubs:
    """The services on one endpoint's channel."""

    def __init__(self, channel: aio.Channel) -> None:
        self.channel = channel
        self.kv = rpc_pb2_grpc.KVStub(channel)
        self.cluster = rpc_pb2_grpc.ClusterStub(channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(channel)
        self.auth = rpc_pb2_grpc.AuthStub(channel)
        self.watch = rpc_pb2_grpc.WatchStub(channel)
        self.lease = rpc_pb2_grpc.LeaseStub(channel)


def _secure(endpoint: str) -> bool | None:
    """Whether the endpoint names https (``None``: no scheme given)."""
    text = endpoint.strip()
    if "://" not in text:
        return None
    return text.lower().startswith("https://")


@dataclass(frozen=True)
class ClientTLS:
    """What a TLS connection presents and trusts, as etcdctl's ``--cacert``, ``--cert`` and
    ``--key`` (PEM bytes): the CA that signed the members' certificates (the system's roots
    when ``None``), and a client certificate when the members require one."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None

    @classmethod
    def from_files(cls, ca_file: str = "", cert_file: str = "", key_file: str = "") -> ClientTLS:
        def read(path: str) -> bytes | None:
            if not path:
                return None
            with open(path, "rb") as f:
                return f.read()

        return cls(read(ca_file), read(cert_file), read(key_file))

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.ca.decode() if self.ca else None)
        if self.cert is not None and self.key is not None:
            with tempfile.TemporaryDirectory() as directory:
                # ssl loads a pair from files only; private to this process, gone at once.
                cert, key = os.path.join(directory, "c.pem"), os.path.join(directory, "k.pem")
                for path, data in ((cert, self.cert), (key, self.key)):
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                ctx.load_cert_chain(cert, key)
        return ctx


class EtcdClient:
    """A small etcd v3 client; create and use it inside one running event loop.

    An ``https://`` endpoint is dialled with TLS (``tls``, or the system's roots), an
    ``http://`` one without; a bare ``host:port`` uses TLS when ``tls`` is given, as etcdctl
    does with its TLS flags."""

    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float = 5.0,
        tls: ClientTLS | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.tls = tls
        # With etcd's auth on: every call carries this user's token (``client.auth``).
        self.credentials = credentials
        self._schemes: dict[str, bool] = {}
        self.endpoints: tuple[str, ...] = tuple(self._target(e) for e in endpoints)
        self.timeout = timeout
        self._stubs: dict[str, _Stubs] = {}

    def _target(self, endpoint: str) -> str:
        """The gRPC target of ``endpoint``, remembering whether it is to be dialled with TLS."""
        target = normalize_endpoint(endpoint)
        secure = _secure(endpoint)
        if secure is not None:
            self._schemes[target] = secure
        return target

    def _is_secure(self, target: str) -> bool:
        return self._schemes.get(target, self.tls is not None)

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every channel; the client may be used again (channels are reopened lazily)."""
        stubs, self._stubs = self._stubs, {}
        for s in stubs.values():
            await s.channel.close()

    # -- plumbing -------------------------------------------------------------------------
    def _on(self, endpoint: str) -> tuple[str, _Stubs]:
        target = self._target(endpoint)
        stubs = self._stubs.get(target)
        if stubs is None:
            secure = self._is_secure(target)
            channel_credentials = (self.tls or ClientTLS()).credentials() if secure else None
            if self.credentials is not None:
                channel = authenticated_channel(
                    target, self.credentials, self.timeout, channel_credentials
                )
            elif channel_credentials is not None:
                channel = aio.secure_channel(target, channel_credentials, CHANNEL_OPTIONS)
            else:
                channel = aio.insecure_channel(target, CHANNEL_OPTIONS)
            stubs = _Stubs(channel)
            self._stubs[target] = stubs
        return target, stubs

    async def _call(self, endpoint: str, fn: Callable[[_Stubs], Awaitable[T]]) -> T:
        target, stubs = self._on(endpoint)
        try:
            return await fn(stubs)
        except aio.AioRpcError as err:
            raise EtcdClientError.from_rpc(err, target) from None

    async def _any(self, fn: Callable[[_Stubs], Awaitable[T]]) -> T:
        """Run ``fn`` on the first endpoint that answers; only unreachability moves on."""
        return await self._first_answering(lambda endpoint: self._call(endpoint, fn))

    async def _first_answering(self, fn: Callable[[str], Awaitable[T]]) -> T:
        """``fn(endpoint)`` on each endpoint in turn until one is reached."""
        last: EtcdClientError | None = None
        for endpoint in self.endpoints:
            try:
                return await fn(endpoint)
            except EtcdClientError as err:
                if not err.unreachable:
                    raise
                last = err
        assert last is not None
        raise last

    # -- cluster --------------------------------------------------------------------------
    async def member_list(self, endpoint: str | None = None) -> MemberList:
        """The member list from ``endpoint``, or from the first configured endpoint that answers."""
        req = rpc_pb2.MemberListRequest()

        def call(s: _Stubs) -> Awaitable[rpc_pb2.MemberListResponse]:
            return s.cluster.MemberList(req, timeout=self.timeout)

        resp = await (self._any(call) if endpoint is None else self._call(endpoint, call))
        return MemberList(
            cluster_id=resp.header.cluster_id,
            member_id=resp.header.member_id,
            members=tuple(_member(m) for m in resp.members),
        )

    async def member_add(self, peer_urls: Sequence[str], learner: bool = False) -> Member:
        """Add a member (a learner if ``learner``); returns the new member (no name yet)."""
        req = rpc_pb2.MemberAddRequest(peerURLs=list(peer_urls), isLearner=learner)
        resp = await self._any(lambda s: s.cluster.MemberAdd(req, timeout=self.timeout))
        return _member(resp.member)

    async def member_remove(self, member_id: int) -> None:
        req = rpc_pb2.MemberRemoveRequest(ID=member_id)
        await self._any(lambda s: s.cluster.MemberRemove(req, timeout=self.timeout))

    async def member_promote(self, member_id: int) -> None:
        req = rpc_pb2.MemberPromoteRequest(ID=member_id)
        await self._any(lambda s: s.cluster.MemberPromote(req, timeout=self.timeout))

    # -- maintenance ----------------------------------------------------------------------
    async def status(self, endpoint: str) -> EndpointStatus:
        target = self._target(endpoint)
        resp = await self._call(
            target, lambda s: s.maintenance.Status(rpc_pb2.StatusRequest(), timeout=self.timeout)
        )
        return EndpointStatus(
            endpoint=target,
            member_id=resp.header.member_id,
            cluster_id=resp.header.cluster_id,
            leader=resp.leader,
            raft_term=resp.raftTerm,
            raft_index=resp.raftIndex,
            raft_applied_index=resp.raftAppliedIndex,
            db_size=resp.dbSize,
            db_size_in_use=resp.dbSizeInUse,
            version=resp.version,
            revision=resp.header.revision,
            is_learner=resp.isLearner,
            errors=tuple(resp.errors),
        )

    async def health(self, endpoint: str) -> EndpointHealth:
        """``etcdctl endpoint health``: a linearizable one-key read, then no active alarm.

        Never raises for an RPC failure: the failure is the answer (``healthy=False``).
        """
        target = self._target(endpoint)
        started = time.monotonic()
        req = rpc_pb2.RangeRequest(key=HEALTH_KEY, keys_only=True, limit=1)
        error: str | None = None
        try:
            await self._call(target, lambda s: s.kv.Range(req, timeout=self.timeout))
        except EtcdClientError as err:
            if err.message != PERMISSION_DENIED:
                error = err.message or err.code.name
        if error is None:
            try:
                alarms = await self._alarms_on(target)
            except EtcdClientError as err:
                error = err.message or err.code.name
            else:
                if alarms:
                    names = ", ".join(f"memberID:{a.member_id} alarm:{a.alarm}" for a in alarms)
                    error = f"Active Alarm(s): {names}"
        return EndpointHealth(
            endpoint=target,
            healthy=error is None,
            took_seconds=time.monotonic() - started,
            error=error,
        )

    async def _alarms_on(self, endpoint: str) -> list[AlarmMember]:
        req = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET)
        resp = await self._call(endpoint, lambda s: s.maintenance.Alarm(req, timeout=self.timeout))
        return _alarms(resp)

    async def alarm_list(self) -> list[AlarmMember]:
        req = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET)
        resp = await self._any(lambda s: s.maintenance.Alarm(req, timeout=self.timeout))
        return _alarms(resp)

    async def alarm_disarm(self, member_id: int, alarm: str) -> list[AlarmMember]:
        """``etcdctl alarm disarm`` for one member's alarm (``NOSPACE``, ``CORRUPT``); returns
        the alarms it deactivated (none when it was not active)."""
        req = rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.DEACTIVATE,
            memberID=member_id,
            alarm=rpc_pb2.AlarmType.Value(alarm),
        )
        resp = await self._any(lambda s: s.maintenance.Alarm(req, timeout=self.timeout))
        return _alarms(resp)

    async def cluster_version(self, endpoint: str) -> str:
        """The cluster version ``endpoint`` reports (``etcdcluster`` of its HTTP ``/version``):
        the minor version etcd runs the cluster at, ``3.5.0`` once every member runs 3.5.
        Raises ``EtcdClientError`` when it does not answer."""
        target = self._target(endpoint)
        secure = self._is_secure(target)
        url = f"{'https' if secure else 'http'}://{target}/version"
        context = (self.tls or ClientTLS()).ssl_context() if secure else None

        def fetch() -> str:
            with urllib.request.urlopen(url, timeout=self.timeout, context=context) as response:
                body = json.loads(response.read())
            return str(body["etcdcluster"])

        try:
            return await asyncio.to_thread(fetch)
        except (OSError, ValueError, KeyError) as err:
            raise EtcdClientError(str(err), grpc.StatusCode.UNAVAILABLE, url) from err

    async def move_leader(self, target_id: int) -> None:
        """Transfer leadership to ``target_id``; the request must reach the current leader."""
        leader_endpoint = await self._leader_endpoint()
        req = rpc_pb2.MoveLeaderRequest(targetID=target_id)
        await self._call(
            leader_endpoint, lambda s: s.maintenance.MoveLeader(req, timeout=self.timeout)
        )

    async def _leader_endpoint(self) -> str:
        """The client URL of the leader: ask the configured endpoints, then the member list."""
        leader = 0
        for endpoint in self.endpoints:
            try:
                st = await self.status(endpoint)
            except EtcdClientError as err:
                if err.unreachable:
                    continue
                raise
            if st.is_leader:
                return endpoint
            leader = leader or st.leader
        if leader:
            for member in (await self.member_list()).members:
                if member.id == leader and member.client_urls:
                    return member.client_urls[0]
        raise EtcdClientError("no reachable leader", grpc.StatusCode.UNAVAILABLE)

    async def defragment(self, endpoint: str) -> None:
        # Defragmentation rewrites the whole backend file: allow it the deadline and then some.
        req = rpc_pb2.DefragmentRequest()
        await self._call(
            endpoint, lambda s: s.maintenance.Defragment(req, timeout=max(self.timeout, 60.0))
        )

    async def snapshot(
        self, endpoint: str, idle_timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """``Maintenance.Snapshot`` from the member at ``endpoint``: the raw bytes as streamed.

        etcd streams its bbolt database followed by a 32-byte sha256 of it (the trailer that
        ``etcdctl snapshot save`` writes to the file and ``snapshot restore`` checks); this
        yields both unchanged, so checking the trailer is the caller's job. There is no overall
        deadline (a large database takes minutes), but a member that sends nothing for
        ``idle_timeout`` seconds (default: the client's timeout, at least 30 s) fails the
        stream with ``DEADLINE_EXCEEDED``. Closing the iterator early cancels the call.
        """
        target, stubs = self._on(endpoint)
        idle = idle_timeout if idle_timeout is not None else max(self.timeout, 30.0)
        call = stubs.maintenance.Snapshot(rpc_pb2.SnapshotRequest())
        try:
            while True:
                try:
                    async with asyncio.timeout(idle):  # not wait_for: it can lose a cancel
                        resp = await call.read()
                except TimeoutError:
                    raise EtcdClientError(
                        f"snapshot stream stalled: nothing received for {idle:g}s",
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        target,
                    ) from None
                except aio.AioRpcError as err:
                    raise EtcdClientError.from_rpc(err, target) from None
                if resp is aio.EOF:
                    return
                assert isinstance(resp, rpc_pb2.SnapshotResponse)
                if resp.blob:
                    yield resp.blob
        finally:
            # A consumer that stops early (or fails) must not leave the member streaming.
            call.cancel()

    # -- watch ----------------------------------------------------------------------------

    async def watch_writes(self, seconds: float, on_write: Callable[[bytes], None]) -> WatchWindow:
        """Watch the whole key space from the current revision for ``seconds``: ``on_write``
        gets the key of every put and delete in order. The first endpoint that answers serves
        it. Values come with the events (etcd has no keys-only watch), so this costs the
        member what one more watcher of everything costs, for the window only."""
        return await self._first_answering(
            lambda endpoint: self._watch_writes_on(endpoint, seconds, on_write)
        )

    async def _watch_writes_on(
        self, endpoint: str, seconds: float, on_write: Callable[[bytes], None]
    ) -> WatchWindow:
        target, stubs = self._on(endpoint)
        # key "\0" to range_end "\0": every key (etcdctl watch --prefix "").
        create = rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(key=b"\0", range_end=b"\0")
        )
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        async def requests() -> AsyncIterator[rpc_pb2.WatchRequest]:
            yield create
            # The sending side stays open until the window ends: a client that half-closes
            # its watch stream is one that is going away.
            await done

        call = stubs.watch.Watch(requests())
        first = last = 0
        events = 0
        try:
            try:
                created = await asyncio.wait_for(call.read(), self.timeout)
            except TimeoutError:
                raise EtcdClientError(
                    "watch not created in time", grpc.StatusCode.DEADLINE_EXCEEDED, target
                ) from None
            if not isinstance(created, rpc_pb2.WatchResponse):
                raise EtcdClientError("watch ended unanswered", grpc.StatusCode.UNAVAILABLE, target)
            if not created.created or created.canceled:
                raise EtcdClientError(
                    f"watch refused: {created.cancel_reason or 'not created'}",
                    grpc.StatusCode.UNKNOWN,
                    target,
                )
            first = last = int(created.header.revision)
            end = loop.time() + seconds
            while (remaining := end - loop.time()) > 0:
                try:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can lose a
                    # cancellation that arrives as a response does.
                    async with asyncio.timeout(remaining):
                        resp = await call.read()
                except TimeoutError:
                    break
                if not isinstance(resp, rpc_pb2.WatchResponse):
                    raise EtcdClientError(
                        "watch ended by the member", grpc.StatusCode.UNAVAILABLE, target
                    )
                if resp.canceled:
                    raise EtcdClientError(
                        f"watch canceled: {resp.cancel_reason}", grpc.StatusCode.UNKNOWN, target
                    )
                for ev in resp.events:
                    on_write(ev.kv.key)
                    events += 1
                if resp.header.revision:
                    last = max(last, int(resp.header.revision))
        except aio.AioRpcError as err:
            raise EtcdClientError.from_rpc(err, target) from None
        finally:
            done.cancel()
            call.cancel()
        return WatchWindow(first, last, events)

    async def watch_history(
        self, start_revision: int, progress_every: float | None = None
    ) -> AsyncGenerator[WatchBatch, None]:
        """Watch the whole key space from ``start_revision`` on the first endpoint, history
        included, until the caller stops: every response with its events (a revision never
        split, revisions in order) and, while nothing is written, etcd's progress
        notifications (no events, the member's revision). Raises ``WatchCompactedError`` when
        compaction removed ``start_revision``, ``EtcdClientError`` when the stream fails.
        With ``progress_every``, it also asks for a progress report that often (etcd 3.4+):
        the member answers once the watch has sent everything up to its revision. Closing the
        iterator cancels the watch."""
        target, stubs = self._on(self.endpoints[0])
        create = rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(
                key=b"\0", range_end=b"\0", start_revision=start_revision, progress_notify=True
            )
        )
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        async def requests() -> AsyncIterator[rpc_pb2.WatchRequest]:
            yield create
            # The sending side stays open: a half-closed watch is one going away.
            while progress_every is not None:
                await asyncio.wait([done], timeout=progress_every)
                if done.done():
                    return
                yield rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())
            await done

        call = stubs.watch.Watch(requests())
        try:
            try:
                pending = [await asyncio.wait_for(call.read(), self.timeout)]
            except TimeoutError:
                raise EtcdClientError(
                    "watch not created in time", grpc.StatusCode.DEADLINE_EXCEEDED, target
                ) from None
            while True:
                resp = pending.pop() if pending else await call.read()
                if not isinstance(resp, rpc_pb2.WatchResponse):
                    raise EtcdClientError(
                        "watch ended by the member", grpc.StatusCode.UNAVAILABLE, target
                    )
                if resp.compact_revision:
                    raise WatchCompactedError(int(resp.compact_revision), target)
                if resp.canceled:
                    raise EtcdClientError(
                        f"watch canceled: {resp.cancel_reason or 'by the member'}",
                        grpc.StatusCode.UNKNOWN,
                        target,
                    )
                if resp.events or not resp.created:
                    yield WatchBatch(tuple(resp.events), int(resp.header.revision))
        except aio.AioRpcError as err:
            raise EtcdClientError.from_rpc(err, target) from None
        finally:
            done.cancel()
            call.cancel()

    async def lease_granted_ttl(self, lease_id: int) -> int | None:
        """The TTL ``lease_id`` was granted with; None when the lease is gone."""
        req = rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id)
        resp = await self._any(lambda s: s.lease.LeaseTimeToLive(req, timeout=self.timeout))
        return int(resp.grantedTTL) if resp.TTL >= 0 and resp.grantedTTL > 0 else None

    # -- auth -----------------------------------------------------------------------------
    # What the operator needs to turn etcd's auth on for its clusters (``etcdctl user add``,
    # ``role add``, ``user grant-role``, ``auth enable``); all are cluster-wide calls.

    async def auth_status(self) -> AuthStatus:
        """``etcdctl auth status``; etcd 3.4 has no such call (``UNIMPLEMENTED``)."""
        req = rpc_pb2.AuthStatusRequest()
        resp = await self._any(lambda s: s.auth.AuthStatus(req, timeout=self.timeout))
        return AuthStatus(enabled=resp.enabled, revision=resp.authRevision)

    async def authenticate(self, user: str, password: str) -> str:
        """A token for ``user`` (raises ``authentication is not enabled`` with auth off, and
        ``authentication failed, invalid user ID or password`` for a wrong password). The
        call goes without this client's own token."""
        req = rpc_pb2.AuthenticateRequest(name=user, password=password)
        resp = await self._any(lambda s: s.auth.Authenticate(req, timeout=self.timeout))
        return str(resp.token)

    async def user_add(self, user: str, password: str) -> None:
        req = rpc_pb2.AuthUserAddRequest(name=user, password=password)
        await self._any(lambda s: s.auth.UserAdd(req, timeout=self.timeout))

    async def user_get(self, user: str) -> tuple[str, ...]:
        """The roles of ``user`` (raises ``user name not found`` when there is none)."""
        req = rpc_pb2.AuthUserGetRequest(name=user)
        resp = await self._any(lambda s: s.auth.UserGet(req, timeout=self.timeout))
        return tuple(resp.roles)

    async def user_change_password(self, user: str, password: str) -> None:
        req = rpc_pb2.AuthUserChangePasswordRequest(name=user, password=password)
        await self._any(lambda s: s.auth.UserChangePassword(req, timeout=self.timeout))

    async def user_grant_role(self, user: str, role: str) -> None:
        req = rpc_pb2.AuthUserGrantRoleRequest(user=user, role=role)
        await self._any(lambda s: s.auth.UserGrantRole(req, timeout=self.timeout))

    async def role_add(self, role: str) -> None:
        req = rpc_pb2.AuthRoleAddRequest(name=role)
        await self._any(lambda s: s.auth.RoleAdd(req, timeout=self.timeout))

    async def role_get(self, role: str) -> None:
        """Succeeds when ``role`` exists (raises ``role name not found`` otherwise)."""
        req = rpc_pb2.AuthRoleGetRequest(role=role)
        await self._any(lambda s: s.auth.RoleGet(req, timeout=self.timeout))

    async def auth_enable(self) -> None:
        """``etcdctl auth enable``: etcd refuses it unless user root exists with role root."""
        req = rpc_pb2.AuthEnableRequest()
        await self._any(lambda s: s.auth.AuthEnable(req, timeout=self.timeout))

    async def auth_disable(self) -> None:
        """``etcdctl auth disable`` (as root, once auth is on)."""
        req = rpc_pb2.AuthDisableRequest()
        await self._any(lambda s: s.auth.AuthDisable(req, timeout=self.timeout))

    # -- KV (tests and probes) ------------------------------------------------------------
    async def get(self, key: bytes | str) -> bytes | None:
        req = rpc_pb2.RangeRequest(key=_key(key))
        resp = await self._any(lambda s: s.kv.Range(req, timeout=self.timeout))
        return resp.kvs[0].value if resp.kvs else None

    async def put(self, key: bytes | str, value: bytes | str) -> int:
        """Write one key; returns the revision of the write."""
        req = rpc_pb2.PutRequest(key=_key(key), value=_key(value))
        resp = await self._any(lambda s: s.kv.Put(req, timeout=self.timeout))
        return resp.header.revision

    async def delete(self, key: bytes | str) -> int:
        """Delete one key; returns how many keys were deleted (0 or 1)."""
        req = rpc_pb2.DeleteRangeRequest(key=_key(key))
        resp = await self._any(lambda s: s.kv.DeleteRange(req, timeout=self.timeout))
        return resp.deleted


def _alarms(resp: rpc_pb2.AlarmResponse) -> list[AlarmMember]:
    return [
        AlarmMember(member_id=a.memberID, alarm=rpc_pb2.AlarmType.Name(a.alarm))
        for a in resp.alarms
    ]
