"""Auth tokens: simple tokens' TTL and invalidation, JWT signing and verification, options."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pyetcd.panic import InvariantError
from pyetcd.server.auth.tokens import (
    AuthInfo,
    AuthOptionsError,
    JWTTokens,
    SimpleTokens,
    parse_go_duration,
    token_provider,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_simple_token_names_its_raft_index_and_lives_its_ttl_after_each_use() -> None:
    clock = Clock()
    tokens = SimpleTokens(ttl=10, clock=clock)
    tokens.enable()
    prefix = tokens.gen_prefix()
    assert len(prefix) == 16 and prefix.isalpha()
    token = tokens.assign("alice", 3, 42, prefix)
    assert token == f"{prefix}.42"
    assert tokens.index_of(token) == 42
    clock.now += 9
    assert tokens.info(token, 5) == AuthInfo("alice", 5)
    clock.now += 9  # 18 s after issue, 9 s after its last use
    assert tokens.info(token, 5) == AuthInfo("alice", 5)
    clock.now += 11
    assert tokens.info(token, 5) is None


def test_simple_tokens_are_dropped_with_their_user_and_when_auth_is_disabled() -> None:
    tokens = SimpleTokens(ttl=300)
    tokens.enable()
    a = tokens.assign("alice", 1, 1, "a" * 16)
    b = tokens.assign("bob", 1, 2, "b" * 16)
    tokens.invalidate_user("alice")
    assert tokens.info(a, 1) is None
    assert tokens.info(b, 1) is not None
    tokens.disable()
    assert tokens.info(b, 1) is None


def test_a_simple_token_assigned_twice_is_an_invariant_broken() -> None:
    tokens = SimpleTokens(ttl=300)
    tokens.enable()
    tokens.assign("alice", 1, 7, "x" * 16)
    with pytest.raises(InvariantError):
        tokens.assign("bob", 1, 7, "x" * 16)


@pytest.mark.parametrize("token", ["abc", "abc.", "abc.1.2", "abc.x"])
def test_malformed_simple_tokens_name_no_index(token: str) -> None:
    assert SimpleTokens(ttl=300).index_of(token) == 0


def _pem_pair(
    tmp_path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
) -> tuple[str, str]:
    priv = tmp_path / "priv.pem"
    pub = tmp_path / "pub.pem"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(priv), str(pub)


def test_jwt_tokens_carry_the_user_and_revision_and_verify_with_the_public_key(
    tmp_path: Path,
) -> None:
    priv, pub = _pem_pair(tmp_path, rsa.generate_private_key(65537, 2048))
    issuer = token_provider(f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=1m", 300)
    assert isinstance(issuer, JWTTokens) and issuer.ttl == 60
    token = issuer.assign("alice", 9, 0, "")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["username"] == "alice" and claims["revision"] == 9 and "exp" in claims
    assert issuer.info(token, 12) == AuthInfo("alice", 9)
    verifier = token_provider(f"jwt,pub-key={pub},sign-method=RS256", 300)
    assert verifier.info(token, 12) == AuthInfo("alice", 9)
    with pytest.raises(AuthOptionsError, match="verify-only"):
        verifier.assign("alice", 9, 0, "")
    assert verifier.info(token[:-4] + "AAAA", 12) is None


def test_a_jwt_signed_with_another_method_or_expired_is_refused(tmp_path: Path) -> None:
    priv, pub = _pem_pair(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    tokens = token_provider(f"jwt,pub-key={pub},priv-key={priv},sign-method=ES256", 300)
    hs = jwt.encode({"username": "a", "revision": 1, "exp": 2**40}, "k" * 32, algorithm="HS256")
    assert tokens.info(hs, 1) is None
    expired = token_provider(f"jwt,priv-key={priv},sign-method=ES256,ttl=-1s", 300)
    assert tokens.info(expired.assign("a", 1, 0, ""), 1) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "invalid auth options"),
        ("jwt,ttl", "invalid auth options"),
        ("jwt,ttl=1m,ttl=2m", "invalid auth options"),
        ("jwt,sign-method=XX999", "invalid auth signature method"),
        ("jwt,sign-method=RS256", "missing key data"),
        ("jwt,sign-method=HS256", "missing key data"),
        ("jwt,sign-method=RS256,priv-key=/nonexistent/key.pem", "no such file"),
    ],
)
def test_unusable_auth_token_options_are_refused(spec: str, message: str) -> None:
    with pytest.raises(AuthOptionsError, match=message):
        token_provider(spec, 300)


def test_mismatched_jwt_keys_are_refused(tmp_path: Path) -> None:
    priv, _ = _pem_pair(tmp_path, rsa.generate_private_key(65537, 2048))
    other = tmp_path / "other"
    other.mkdir()
    _, pub = _pem_pair(other, rsa.generate_private_key(65537, 2048))
    with pytest.raises(AuthOptionsError, match="don't match"):
        token_provider(f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256", 300)


@pytest.mark.parametrize(
    ("text", "seconds"), [("5m", 300.0), ("1h30m", 5400.0), ("300ms", 0.3), ("1.5s", 1.5)]
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


def test_a_bad_duration_is_refused() -> None:
    with pytest.raises(AuthOptionsError, match="invalid duration"):
        parse_go_duration("5 minutes")
