"""Secret key files: created owner-only and atomically, never overwritten, strictly loaded."""

from __future__ import annotations

import stat

import pytest

from deid.dicom.keys import KEY_BYTES, create_key, keyed_digest, load_key, load_or_create_key
from deid.errors import InputError, OutputError


def test_create_then_load(tmp_path):
    path = tmp_path / "release.key"
    key = create_key(path)
    assert len(key) == KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path) == key
    assert load_or_create_key(path) == key
    assert create_key(tmp_path / "other.key") != key  # from the OS CSPRNG
    assert not list(tmp_path.glob(".deid-partial-*"))


def test_never_overwrites(tmp_path):
    path = tmp_path / "release.key"
    key = create_key(path)
    with pytest.raises(OutputError, match="refusing to overwrite"):
        create_key(path)
    assert load_key(path) == key


def test_refuses_a_key_others_can_read(tmp_path):
    path = tmp_path / "release.key"
    create_key(path)
    path.chmod(0o644)
    with pytest.raises(InputError, match="chmod 600"):
        load_key(path)


def test_refuses_malformed_or_missing_keys(tmp_path):
    path = tmp_path / "short.key"
    path.write_text("abcd\n")
    path.chmod(0o600)
    with pytest.raises(InputError, match="64 hex digits"):
        load_key(path)
    with pytest.raises(InputError, match="not found"):
        load_key(tmp_path / "absent.key")


def test_keyed_digest_separates_domains_and_keys():
    key = b"\x01" * 32
    assert keyed_digest(key, "uid", "1.2.3") != keyed_digest(key, "patient", "1.2.3")
    assert keyed_digest(key, "uid", "1.2.3") != keyed_digest(b"\x02" * 32, "uid", "1.2.3")
    with pytest.raises(InputError, match="shorter than 16 bytes"):
        keyed_digest(b"short", "uid", "1.2.3")
