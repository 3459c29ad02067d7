"""Embedding cache: one small ``.npz`` per (checkpoint, image content), so re-scoring a release
skips decoding and the model for every file it has seen.

Keys are SHA-256 digests of file bytes, never paths or header values, so the cache holds no
identifier; it does hold embeddings, which are as sensitive as the images, so the folder is
created owner-only.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from deid.errors import OutputError
from deid.io.atomic import atomic_write_bytes

_BLOCK = 1 << 20


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mami-deid/embeddings`` (``~/.cache`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mami-deid" / "embeddings"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def content_key(paths: Iterable[Path]) -> str:
    """Key of a record made of one or more files (slice order matters)."""
    digests = [file_sha256(p) for p in paths]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("\n".join(digests).encode("ascii")).hexdigest()


def folder_sha256(folder: Path) -> str:
    """Hash of every file under ``folder`` (relative names and bytes), e.g. a checkpoint."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        digest.update(file_sha256(path).encode("ascii"))
    return digest.hexdigest()


class EmbeddingCache:
    """Embeddings of one checkpoint, keyed by image content.

    Parameters
    ----------
    root : Path
        Cache folder (see :func:`default_cache_dir`); created on first write.
    checkpoint_sha256 : str
        Hash of the checkpoint: embeddings of other checkpoints live in other subfolders.
    """

    def __init__(self, root: Path, checkpoint_sha256: str) -> None:
        self.folder = Path(root) / checkpoint_sha256[:32]

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, key: str) -> tuple[np.ndarray, str] | None:
        """The cached (embedding, modality) of ``key``, or None (damaged entries count as missing)."""
        try:
            with np.load(self._path(key), allow_pickle=False) as data:
                return data["embedding"], str(data["modality"])
        except (OSError, ValueError, KeyError):
            return None

    def put(self, key: str, embedding: np.ndarray, modality: str) -> None:
        """Store one embedding and the modality of its image atomically.

        Raises
        ------
        OutputError
            If the cache folder cannot be written.
        """
        buffer = io.BytesIO()
        np.savez(
            buffer, embedding=np.asarray(embedding, dtype=np.float32), modality=np.str_(modality)
        )
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write_bytes(self._path(key), buffer.getvalue(), mode=0o600)
        except OSError as exc:
            raise OutputError(
                f"cannot write the embedding cache under {self.folder} ({exc.strerror}); "
                "pass --cache-dir with a writable folder, or --no-cache"
            ) from exc
