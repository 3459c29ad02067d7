"""Atomic file writes: data goes to a temporary file beside the target and is renamed into place,
so an interrupted run never leaves a half-written file under a final name."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = ".deid-partial-"


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: int = 0o644, *, durable: bool = True
) -> Iterator[BinaryIO]:
    """Open a binary temp file beside ``path``; on success rename it to ``path``.

    On any exception the temp file is removed and ``path`` is left as it was. ``mode`` sets the
    final file's permissions (use 0o600 for secrets such as keys and pseudonym maps). The rename
    alone protects against a killed process; ``durable`` also fsyncs the data first, so a power
    loss cannot leave an empty file under the final name (about 10 ms per file).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, mode: int = 0o644, *, durable: bool = True
) -> None:
    with atomic_write(path, mode, durable=durable) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def remove_partials(folder: str | os.PathLike[str]) -> int:
    """Delete temp files left by an interrupted run under ``folder``; return how many."""
    removed = 0
    for leftover in Path(folder).rglob(f"{TEMP_PREFIX}*"):
        leftover.unlink()
        removed += 1
    return removed
