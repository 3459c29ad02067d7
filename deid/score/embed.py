"""Release units → embeddings: decode and preprocess in worker processes, embed in batches,
reuse cached embeddings by content hash.

A *unit* is what the re-identifier sees as one image: one discovered item (a file or a DICOM
series), or, when a truth CSV says so, several single-slice files that form one volume.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deid.errors import InputError, UnreadableFileError
from deid.io.record import ReleaseItem
from deid.score.cache import EmbeddingCache, content_key

MIN_IMAGES_PER_WORKER = 32
# progress(iterable, description, total) -> the iterable, wrapped in a progress bar or not
Progress = Callable[[Iterable[Any], str, int], Iterable[Any]]


def no_progress(iterable: Iterable[Any], description: str, total: int) -> Iterable[Any]:
    return iterable


@dataclass(frozen=True)
class Unit:
    key: str  # release-relative key of the first item
    items: tuple[ReleaseItem, ...]

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(p for item in self.items for p in item.paths)


@dataclass
class Embedded:
    """Result of :func:`embed_units`, index-aligned with the units that were read."""

    units: list[Unit]
    embeddings: np.ndarray  # (N, E) float32, L2-normalised
    modalities: list[str]
    skipped: list[tuple[str, str]]  # (release-relative key, reason)
    cache_hits: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)


def load_unit(unit: Unit) -> tuple[np.ndarray, str]:
    """Decode a unit to float32 modality-unit pixels; slices of a multi-item unit are stacked.

    Raises
    ------
    UnreadableFileError
        If a file cannot be decoded, or the slices of a unit differ in shape.
    """
    from deid.io import load

    records = [load(item) for item in unit.items]
    if len(records) == 1:
        return np.asarray(records[0].pixels, dtype=np.float32), records[0].modality
    shapes = {r.pixels.shape for r in records}
    if len(shapes) != 1 or any(r.is_volume for r in records):
        raise UnreadableFileError(
            unit.key,
            f"the truth CSV groups files of different shapes {sorted(shapes)} into one volume",
        )
    return np.stack([r.pixels for r in records]).astype(np.float32), records[0].modality


def _prepare(args: tuple[Unit, Any]) -> tuple[np.ndarray | None, str, str, float, float]:
    """Worker: decode and preprocess one unit. Returns (tensor as numpy or None, modality,
    reason when unreadable, decode seconds, preprocess seconds)."""
    from reid_model.preprocess import preprocess

    unit, cfg = args
    start = time.perf_counter()
    try:
        pixels, modality = load_unit(unit)
    except UnreadableFileError as exc:
        return None, "", exc.reason, time.perf_counter() - start, 0.0
    decoded = time.perf_counter()
    try:
        x = preprocess(pixels, modality, cfg).numpy()
    except (InputError, ValueError) as exc:  # e.g. no finite pixel, or a shape it cannot take
        return None, modality, f"cannot be preprocessed for the model: {exc}", decoded - start, 0.0
    return x, modality, "", decoded - start, time.perf_counter() - decoded


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _prepared(units: Sequence[Unit], cfg: Any, workers: int) -> Iterator[tuple]:
    jobs = [(unit, cfg) for unit in units]
    # a spawned worker pays a torch import (seconds): not worth it for a handful of images
    workers = min(workers, len(jobs) // MIN_IMAGES_PER_WORKER)
    if workers <= 0:
        yield from map(_prepare, jobs)
        return
    # spawn, not fork: the parent holds torch thread pools that a forked child must not inherit
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        # bounded read-ahead: at most 4 prepared images per worker wait for the model
        pending: deque[Future[tuple]] = deque()
        remaining = iter(jobs)
        for job in remaining:
            pending.append(pool.submit(_prepare, job))
            if len(pending) >= 4 * workers:
                break
        while pending:
            result = pending.popleft().result()
            job = next(remaining, None)
            if job is not None:
                pending.append(pool.submit(_prepare, job))
            yield result


def embed_units(
    units: Sequence[Unit],
    model: Any,
    preprocess_cfg: Any,
    *,
    cache: EmbeddingCache | None,
    device: str,
    batch_size: int = 32,
    workers: int = 0,
    progress: Progress = no_progress,
) -> Embedded:
    """Embed every unit, reading from and writing to ``cache`` when given.

    Parameters
    ----------
    units : sequence of Unit
        What to embed, in release order.
    model : MaMI
        In eval mode on ``device``.
    preprocess_cfg : PreprocessConfig
        The checkpoint's preprocessing.
    cache : EmbeddingCache or None
        Content-keyed cache; None embeds everything.
    device : str
        Torch device of ``model``.
    batch_size, workers : int
        Images per forward pass; decoding processes (0: decode in this process; fewer are
        used when there are under ``MIN_IMAGES_PER_WORKER`` images per worker). Worker
        processes are spawned, so scripts that call this with workers need the usual
        ``if __name__ == "__main__":`` guard.
    progress : Progress
        Wraps the long loops in progress bars.

    Returns
    -------
    Embedded
        Embeddings of the readable units; unreadable ones are listed in ``skipped``.
    """
    import torch

    timings = {"hash": 0.0, "decode": 0.0, "preprocess": 0.0, "model": 0.0}
    keys: list[str] = []
    cached: dict[int, np.ndarray] = {}
    modalities: dict[int, str] = {}
    start = time.perf_counter()
    for i, unit in enumerate(progress(units, "hashing files", len(units))):
        keys.append(content_key(unit.paths))
        hit = cache.get(keys[-1]) if cache is not None else None
        if hit is not None:
            cached[i], modalities[i] = hit
    timings["hash"] = time.perf_counter() - start

    todo = [i for i in range(len(units)) if i not in cached]
    results: dict[int, np.ndarray] = dict(cached)
    skipped: list[tuple[str, str]] = []
    pending: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}

    def flush(shape: tuple[int, ...]) -> None:
        batch = pending.pop(shape)
        t0 = time.perf_counter()
        x = torch.from_numpy(np.stack([b[1] for b in batch])).to(device)
        emb = model.embed(x).float().cpu().numpy()
        timings["model"] += time.perf_counter() - t0
        for (index, _), vector in zip(batch, emb, strict=True):
            results[index] = vector
            if cache is not None:
                cache.put(keys[index], vector, modalities[index])

    prepared = _prepared([units[i] for i in todo], preprocess_cfg, workers)
    for index, (x, modality, reason, t_dec, t_pre) in zip(
        todo, progress(prepared, "decoding and embedding", len(todo)), strict=True
    ):
        timings["decode"] += t_dec
        timings["preprocess"] += t_pre
        modalities[index] = modality
        if x is None:
            skipped.append((units[index].key, reason))
            continue
        pending.setdefault(x.shape, []).append((index, x))
        if len(pending[x.shape]) >= batch_size:
            flush(x.shape)
    for shape in list(pending):
        flush(shape)

    order = sorted(results)
    dim = next(iter(results.values())).shape[0] if results else 0
    return Embedded(
        units=[units[i] for i in order],
        embeddings=np.stack([results[i] for i in order]).astype(np.float32)
        if order
        else np.zeros((0, dim), dtype=np.float32),
        modalities=[modalities.get(i, "") for i in order],
        skipped=skipped,
        cache_hits=len(cached),
        timings_s=timings,
    )
