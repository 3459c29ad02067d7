"""Linkage against an identified gallery: for each release image, its best match among images
whose identities an attacker holds (e.g. an earlier, identified release)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deid.errors import InputError
from deid.report.schema import Gallery, histogram
from deid.score.embed import Embedded, Progress, embed_units, no_progress
from deid.score.truth import Label, build_units, read_truth

PROBABILITY_EDGES = np.linspace(0.0, 1.0, 21).tolist()
_CHUNK = 4096


def best_matches(query: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and cosine similarity of each query's most similar gallery row, chunked."""
    index = np.empty(len(query), dtype=np.int64)
    sims = np.empty(len(query), dtype=np.float32)
    for start in range(0, len(query), _CHUNK):
        block = query[start : start + _CHUNK] @ gallery.T
        index[start : start + _CHUNK] = block.argmax(axis=1)
        sims[start : start + _CHUNK] = block.max(axis=1)
    return index, sims


def _gallery_identities(folder: Path, embedded: Embedded) -> list[str | None]:
    """Patient of each gallery image: from ``<gallery>.truth.csv`` beside it, else PatientID."""
    csv_path = folder.with_name(folder.name + ".truth.csv")
    if csv_path.is_file():
        truth = read_truth(csv_path)
        labels: list[str | None] = []
        for unit in embedded.units:
            rel = unit.paths[0].relative_to(folder).as_posix()
            label = truth.by_file.get(rel)
            labels.append(label.patient if label else None)
        return labels
    from deid.io.dicom_read import read_dataset

    identities: list[str | None] = []
    for unit in embedded.units:
        if unit.items[0].kind != "dicom":
            identities.append(None)
            continue
        value = str(read_dataset(unit.paths[0], pixels=False).get("PatientID", "") or "")
        identities.append(value or None)
    return identities


def gallery_section(
    folder: Path,
    release: Embedded,
    release_labels: Sequence[Label | None],
    model: Any,
    preprocess_cfg: Any,
    calibrator: Any,
    *,
    threshold: float,
    cache: Any,
    device: str,
    batch_size: int,
    workers: int,
    progress: Progress = no_progress,
) -> Gallery:
    """Embed the gallery folder and match every release image against it.

    The share of correct best matches needs identities on both sides: the release's truth and
    the gallery's own truth CSV (``<gallery>.truth.csv``) or DICOM PatientID. Identities are
    compared, never written to the report.

    Raises
    ------
    InputError
        If the gallery folder is missing or holds no readable image.
    """
    from deid.io import discover

    if not folder.is_dir():
        raise InputError(f"gallery folder {folder} does not exist; check --gallery")
    found = discover(folder)
    units, _ = build_units(found.items, folder, None)
    embedded = embed_units(
        units,
        model,
        preprocess_cfg,
        cache=cache,
        device=device,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
    )
    if len(embedded.units) == 0:
        raise InputError(
            f"the gallery {folder} holds no readable image; give a folder of DICOM, PNG, JPEG, "
            "TIFF or NIfTI files"
        )
    index, sims = best_matches(release.embeddings, embedded.embeddings)
    probability = np.asarray(calibrator.predict(sims.astype(np.float64)), dtype=np.float64)
    identities = _gallery_identities(folder, embedded)
    pairs = [
        (label.patient, identities[j])
        for label, j in zip(release_labels, index.tolist(), strict=True)
        if label is not None and identities[j] is not None
    ]
    return {
        "n_gallery": len(embedded.units),
        "with_truth": bool(pairs),
        "top1_correct_share": float(np.mean([a == b for a, b in pairs])) if pairs else None,
        "best_match_probability": histogram(probability.tolist(), PROBABILITY_EDGES),
        "n_above_threshold": int((probability >= threshold).sum()),
    }
