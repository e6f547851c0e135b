"""The process kubelet's refresh of Secret and ConfigMap volumes (``podspec.update_files``):
only changed files are written, all of them aside before any is renamed into place, and a file
the reader has open keeps its old content (a rename, never a rewrite in place)."""

from __future__ import annotations

from pathlib import Path

from e2e.kubelet import podspec


def test_only_changed_files_are_replaced_and_open_readers_keep_the_old_content(
    tmp_path: Path,
) -> None:
    podspec.write_files(tmp_path, {"tls.crt": b"old cert", "tls.key": b"old key", "ca.crt": b"ca"})
    ca_inode = (tmp_path / "ca.crt").stat().st_ino
    with (tmp_path / "tls.crt").open("rb") as reader:
        written = podspec.update_files(
            tmp_path,
            {"tls.crt": b"new cert", "tls.key": b"new key", "ca.crt": b"ca", "extra/x": b"1"},
            0o600,
        )
        assert reader.read() == b"old cert"
    assert written == ["tls.crt", "tls.key", "extra/x"]
    assert (tmp_path / "tls.crt").read_bytes() == b"new cert"
    assert (tmp_path / "tls.key").read_bytes() == b"new key"
    assert (tmp_path / "extra" / "x").read_bytes() == b"1"
    assert (tmp_path / "ca.crt").stat().st_ino == ca_inode  # unchanged: not rewritten
    assert (tmp_path / "tls.key").stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob("*.sync"))
    assert podspec.update_files(tmp_path, {"tls.crt": b"new cert"}) == []
