"""The secret key behind every pseudonym, UID and date shift, and the keyed hash built on it.

A key file holds 32 random bytes as 64 hex digits. It is created with owner-only permissions
(0o600), atomically, and a key file that others can read is refused: whoever holds the key can
re-link pseudonyms to identities by trying candidate identifiers.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from deid.errors import InputError, OutputError
from deid.io.atomic import atomic_write_text

KEY_BYTES = 32


def create_key(path: str | os.PathLike[str]) -> bytes:
    """Write a new random key to ``path`` (mode 0o600) and return it.

    The key comes from the operating system's CSPRNG (:mod:`secrets`), not from a seeded
    generator: a reproducible key would be a guessable key.

    Raises
    ------
    OutputError
        If ``path`` already exists (a key is never overwritten).
    """
    target = Path(path)
    if target.exists():
        raise OutputError(
            f"{target} already exists; refusing to overwrite a key. Pass it with --key-file to "
            "reuse it, or choose a new path."
        )
    key = secrets.token_bytes(KEY_BYTES)
    atomic_write_text(target, key.hex() + "\n", mode=0o600)
    return key


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read a key written by :func:`create_key`.

    Raises
    ------
    InputError
        If the file is missing, readable by group or others, or not 64 hex digits.
    """
    source = Path(path)
    if not source.is_file():
        raise InputError(
            f"key file {source} not found; give the path of the release's existing key, or "
            "create a new key (the same key must be used for every file of a release)"
        )
    mode = source.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(
            f"key file {source} is accessible by other users (mode {oct(mode & 0o777)}); "
            f"run 'chmod 600 {source}' and retry"
        )
    text = source.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise InputError(
            f"key file {source} does not hold {KEY_BYTES} bytes as {2 * KEY_BYTES} hex digits; "
            "use a file written by create_key"
        )
    return key


def load_or_create_key(path: str | os.PathLike[str]) -> bytes:
    """Load the key at ``path``, creating it first when the file does not exist."""
    return load_key(path) if Path(path).exists() else create_key(path)


def keyed_digest(key: bytes, domain: str, value: str) -> bytes:
    """HMAC-SHA256 of ``value`` under ``key``, separated by ``domain`` ("patient-id", "uid", ...).

    The domain keeps digests of the same text used for different purposes unrelated.
    """
    if len(key) < 16:
        raise InputError("the secret key is shorter than 16 bytes; use a key from create_key")
    message = domain.encode("utf-8") + b"\x00" + value.encode("utf-8", errors="surrogateescape")
    return hmac.new(key, message, hashlib.sha256).digest()
