"""Auth tokens: etcd's ``--auth-token`` providers, simple and JWT.

**Simple** (``auth/simple_token.go``): 16 random letters, a dot and the Raft index of the
``Authenticate`` entry that made it. Every member learns the token when it applies that entry, so
any member accepts it once its applied index has reached the number after the dot. A token lives
``--auth-token-ttl`` seconds after its last use; changing a user's password or deleting the user
drops its tokens, and disabling auth drops them all. Tokens are held in memory only: a restarted
member has none, and clients authenticate again (they do on ``invalid auth token``).

**JWT** (``auth/jwt.go``): ``jwt,pub-key=<file>,priv-key=<file>,sign-method=<alg>[,ttl=<dur>]``,
signed claims ``username``, ``revision`` (the auth store's revision when it was issued) and
``exp``; any member with the key verifies one without state. A member given only a public key
verifies and does not issue. PyJWT does the JOSE work.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from pyetcd.panic import InvariantError

LETTERS = string.ascii_lowercase + string.ascii_uppercase
SIMPLE_TOKEN_LENGTH = 16
JWT_DEFAULT_TTL = 300.0


class AuthOptionsError(Exception):
    """``--auth-token`` cannot be used; the message is etcd's (the member does not start)."""


@dataclass(frozen=True)
class AuthInfo:
    """Who a request is from: the user and the auth revision its credentials were issued at."""

    username: str
    revision: int


class TokenProvider(Protocol):
    def enable(self) -> None: ...

    def disable(self) -> None: ...

    def gen_prefix(self) -> str:
        """What the member that serves ``Authenticate`` puts in the proposal (simple only)."""
        ...

    def assign(self, username: str, revision: int, index: int, prefix: str) -> str:
        """At apply: the token for ``username`` (index: the entry's Raft index)."""
        ...

    def index_of(self, token: str) -> int:
        """The applied index a member needs before it can know ``token`` (0: none)."""
        ...

    def info(self, token: str, revision: int) -> AuthInfo | None: ...

    def invalidate_user(self, username: str) -> None: ...


class SimpleTokens:
    """etcd's ``tokenSimple``: tokens assigned at apply, kept in memory with a sliding TTL."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl if ttl > 0 else 300.0
        self._clock = clock
        self._enabled = False
        self._tokens: dict[str, tuple[str, float]] = {}

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False
        self._tokens.clear()

    def gen_prefix(self) -> str:
        return "".join(secrets.choice(LETTERS) for _ in range(SIMPLE_TOKEN_LENGTH))

    def assign(self, username: str, revision: int, index: int, prefix: str) -> str:
        token = f"{prefix}.{index}"
        if not self._enabled:
            return token
        if token in self._tokens:
            # etcd panics: two Authenticate entries can never share an index.
            raise InvariantError(f"failed to assign already-used simple token to user {username!r}")
        self._sweep()
        self._tokens[token] = (username, self._clock() + self.ttl)
        return token

    def index_of(self, token: str) -> int:
        _, dot, index = token.partition(".")
        if not dot or not index.isdigit() or "." in index:
            return 0
        return int(index)

    def info(self, token: str, revision: int) -> AuthInfo | None:
        held = self._tokens.get(token)
        if held is None:
            return None
        username, expires = held
        now = self._clock()
        if now > expires:
            del self._tokens[token]
            return None
        self._tokens[token] = (username, now + self.ttl)
        return AuthInfo(username, revision)

    def invalidate_user(self, username: str) -> None:
        for token in [t for t, (name, _) in self._tokens.items() if name == username]:
            del self._tokens[token]

    def _sweep(self) -> None:
        """Drop expired tokens (etcd's keeper does it every second; here, on each assign)."""
        now = self._clock()
        for token in [t for t, (_, expires) in self._tokens.items() if now > expires]:
            del self._tokens[token]


class JWTTokens:
    """etcd's ``tokenJWT``: stateless signed tokens."""

    def __init__(self, method: str, signing_key: Any, verifying_key: Any, ttl: float) -> None:
        self.method = method
        self._signing_key = signing_key
        self._verifying_key = verifying_key
        self.ttl = ttl

    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass

    def gen_prefix(self) -> str:
        return ""

    def assign(self, username: str, revision: int, index: int, prefix: str) -> str:
        if self._signing_key is None:
            raise AuthOptionsError("auth: token signing attempted with verify-only key")
        claims = {"username": username, "revision": revision, "exp": int(time.time() + self.ttl)}
        return jwt.encode(claims, self._signing_key, algorithm=self.method)

    def index_of(self, token: str) -> int:
        return 0

    def info(self, token: str, revision: int) -> AuthInfo | None:
        try:
            claims = jwt.decode(token, self._verifying_key, algorithms=[self.method])
        except jwt.PyJWTError:
            return None
        username = claims.get("username")
        rev = claims.get("revision")
        if not isinstance(username, str) or not isinstance(rev, int | float):
            return None
        return AuthInfo(username, int(rev))

    def invalidate_user(self, username: str) -> None:
        pass


class NopTokens(SimpleTokens):
    """``--auth-token ""``: etcd's nop provider, which issues nothing usable."""

    def assign(self, username: str, revision: int, index: int, prefix: str) -> str:
        raise AuthOptionsError("auth: invalid auth options")


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds of a Go ``time.ParseDuration`` string (``5m``, ``1h30m``, ``300ms``)."""
    if text in ("0", "+0", "-0"):
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION.match(body, pos)
        if m is None:
            raise AuthOptionsError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not body:
        raise AuthOptionsError(f'time: invalid duration "{text}"')
    return sign * total


def _split_options(spec: str) -> tuple[str, dict[str, str]]:
    """etcd's ``decomposeOpts``: ``type,key=value,...``; a malformed or repeated option is
    refused."""
    kind, *rest = spec.split(",")
    opts: dict[str, str] = {}
    for item in rest:
        pair = item.split("=")
        if len(pair) != 2 or pair[0] in opts:
            raise AuthOptionsError("auth: invalid auth options")
        opts[pair[0]] = pair[1]
    return kind, opts


JWT_METHODS = {
    **{f"RS{n}": "rsa" for n in (256, 384, 512)},
    **{f"PS{n}": "rsa" for n in (256, 384, 512)},
    **{f"ES{n}": "ec" for n in (256, 384, 512)},
    **{f"HS{n}": "hmac" for n in (256, 384, 512)},
}


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise AuthOptionsError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None


def _jwt_keys(method: str, opts: dict[str, str]) -> tuple[Any, Any]:
    """(signing key or None when verify-only, verifying key), as etcd's ``jwtOptions.Key``."""
    family = JWT_METHODS.get(method)
    if family is None:
        raise AuthOptionsError("auth: invalid auth signature method")
    priv_pem = _read(opts["priv-key"]) if opts.get("priv-key") else b""
    pub_pem = _read(opts["pub-key"]) if opts.get("pub-key") else b""
    if family == "hmac":
        if not priv_pem:
            raise AuthOptionsError("auth: missing key data")
        return priv_pem, priv_pem
    wanted = rsa if family == "rsa" else ec
    priv = pub = None
    try:
        if priv_pem:
            priv = load_pem_private_key(priv_pem, password=None)
        if pub_pem:
            pub = load_pem_public_key(pub_pem)
    except (ValueError, TypeError) as exc:
        raise AuthOptionsError(f"auth: cannot parse the JWT key: {exc}") from None
    kinds = (
        (rsa.RSAPrivateKey, rsa.RSAPublicKey)
        if wanted is rsa
        else (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)
    )
    if (priv is not None and not isinstance(priv, kinds[0])) or (
        pub is not None and not isinstance(pub, kinds[1])
    ):
        raise AuthOptionsError(f"auth: the key is not a {family.upper()} key, as {method} needs")
    if priv is None:
        if pub is None:
            raise AuthOptionsError("auth: missing key data")
        return None, pub
    if pub is not None and pub.public_numbers() != priv.public_key().public_numbers():
        raise AuthOptionsError("auth: public and private keys don't match")
    return priv, priv.public_key()


def token_provider(spec: str, simple_ttl: float) -> TokenProvider:
    """The provider ``--auth-token`` names; :class:`AuthOptionsError` when it cannot be made."""
    kind, opts = _split_options(spec)
    if kind == "simple":
        return SimpleTokens(simple_ttl)
    if kind == "jwt":
        ttl = parse_go_duration(opts["ttl"]) if opts.get("ttl") else JWT_DEFAULT_TTL
        method = opts.get("sign-method", "")
        signing, verifying = _jwt_keys(method, opts)
        return JWTTokens(method, signing, verifying, ttl)
    if kind == "":
        return NopTokens(simple_ttl)
    raise AuthOptionsError("auth: invalid auth options")
