"""What a backup object says about itself, as S3 user metadata (``x-amz-meta-*``).

A complete backup object carries: the format marker, how it was written (compression,
encryption marker), our sha256 and size of the raw stream (etcd's bytes as streamed, trailer
included), the stored size, and what the caller knew of the source (revision, cluster id, etcd
version, member). Nothing secret ever goes here: no key, no key id, no credentials.

An object without ``sha256`` is not a complete backup: the uploader only ever writes the final
key with the full record (a single PutObject, or a server-side copy after a multipart upload,
see ``backup.upload``), and the download refuses anything less.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from etcd_operator.api.backup import Compression
from etcd_operator.backup.cipher import ENCRYPTION_AES_GCM, ENCRYPTION_NONE
from etcd_operator.backup.errors import NotABackupError

# S3 lower-cases user metadata names; all of ours are lower case already.
FORMAT = "etcd-backup-format"
FORMAT_VERSION = "1"
COMPRESSION = "compression"
ENCRYPTION = "encryption"
SHA256 = "sha256"
RAW_SIZE = "raw-size"
STORED_SIZE = "stored-size"
REVISION = "etcd-revision"
CLUSTER_ID = "etcd-cluster-id"
ETCD_VERSION = "etcd-version"
MEMBER = "etcd-member"

_ENCRYPTIONS = (ENCRYPTION_NONE, ENCRYPTION_AES_GCM)
# Metadata travels as HTTP headers: keep free text to printable ASCII.
_SAFE = " -._~:/+@=,"
_MAX_TEXT = 256


@dataclass(frozen=True)
class SnapshotInfo:
    """What the caller knows about where the snapshot came from; every field optional."""

    revision: int | None = None
    cluster_id: int | None = None
    etcd_version: str | None = None
    member: str | None = None


@dataclass(frozen=True)
class ObjectMetadata:
    """The metadata of one backup object, decoded."""

    compression: Compression
    encryption: str
    sha256: str | None = None
    raw_size: int | None = None
    stored_size: int | None = None
    snapshot: SnapshotInfo = field(default_factory=SnapshotInfo)

    def __post_init__(self) -> None:
        if self.encryption not in _ENCRYPTIONS:
            raise ValueError(f"unknown encryption marker {self.encryption!r}")

    @property
    def encrypted(self) -> bool:
        return self.encryption != ENCRYPTION_NONE

    @property
    def complete(self) -> bool:
        """True when the upload finished and recorded what the object must decode to."""
        return self.sha256 is not None and self.raw_size is not None

    def to_s3(self) -> dict[str, str]:
        out = {
            FORMAT: FORMAT_VERSION,
            COMPRESSION: Compression(self.compression).value,
            ENCRYPTION: self.encryption,
        }
        if self.sha256 is not None:
            out[SHA256] = self.sha256
        if self.raw_size is not None:
            out[RAW_SIZE] = str(self.raw_size)
        if self.stored_size is not None:
            out[STORED_SIZE] = str(self.stored_size)
        info = self.snapshot
        if info.revision is not None:
            out[REVISION] = str(info.revision)
        if info.cluster_id is not None:
            out[CLUSTER_ID] = f"{info.cluster_id:x}"  # hex, as etcdctl prints ids
        if info.etcd_version is not None:
            out[ETCD_VERSION] = _text(info.etcd_version)
        if info.member is not None:
            out[MEMBER] = _text(info.member)
        return out

    @classmethod
    def from_s3(cls, meta: Mapping[str, str], name: str) -> ObjectMetadata:
        """Decode an object's metadata; :class:`NotABackupError` if it is not ours."""
        m = {k.lower(): v for k, v in meta.items()}
        if m.get(FORMAT) != FORMAT_VERSION:
            found = m.get(FORMAT)
            raise NotABackupError(
                f"{name} is not an etcd-operator backup (no {FORMAT} metadata)"
                if found is None
                else f"{name} has backup format {found!r}, which this operator cannot read"
            )
        try:
            compression = Compression(m.get(COMPRESSION, ""))
            encryption = m.get(ENCRYPTION, "")
            if encryption not in _ENCRYPTIONS:
                raise ValueError(encryption)
            sha = m.get(SHA256)
            if sha is not None and (len(sha) != 64 or not _is_hex(sha)):
                raise ValueError(sha)
            info = SnapshotInfo(
                revision=_int(m.get(REVISION)),
                cluster_id=int(m[CLUSTER_ID], 16) if CLUSTER_ID in m else None,
                etcd_version=unquote(m[ETCD_VERSION]) if ETCD_VERSION in m else None,
                member=unquote(m[MEMBER]) if MEMBER in m else None,
            )
            return cls(
                compression=compression,
                encryption=encryption,
                sha256=sha.lower() if sha is not None else None,
                raw_size=_int(m.get(RAW_SIZE)),
                stored_size=_int(m.get(STORED_SIZE)),
                snapshot=info,
            )
        except ValueError:
            raise NotABackupError(f"{name} has unreadable backup metadata") from None


def _text(value: str) -> str:
    return quote(value, safe=_SAFE)[:_MAX_TEXT]


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True
