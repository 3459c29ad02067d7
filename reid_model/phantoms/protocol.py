"""Evaluation protocol of the phantom cohorts: patient-disjoint splits and query/gallery roles."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deid.errors import InputError
from reid_model.phantoms.common import SPLIT_CODE, STREAM_SPLIT, check_indices, stream_key
from reid_model.phantoms.types import PhantomImage

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_EDGES = (0.6, 0.8)  # cumulative fractions of train and val


def split_of(patient_index: int, seed: int = 0) -> str:
    """The split ("train", "val" or "test", about 60/20/20) of a patient index.

    It depends only on (seed, patient_index), so a patient keeps its split in every dataset and
    whatever the cohort size.
    """
    check_indices(patient_index=patient_index, seed=seed)
    draw = np.random.default_rng(stream_key(seed, SPLIT_CODE, patient_index, STREAM_SPLIT)).random()
    if draw < _SPLIT_EDGES[0]:
        return "train"
    return "val" if draw < _SPLIT_EDGES[1] else "test"


@dataclass(frozen=True)
class QueryGallery:
    """Positions (into the sequence given to ``query_gallery``) of queries and gallery items."""

    query: tuple[int, ...]
    gallery: tuple[int, ...]


def _key(item: PhantomImage | tuple[str, int]) -> tuple[str, int]:
    if isinstance(item, PhantomImage):
        return item.patient, item.visit
    if isinstance(item, tuple) and len(item) == 2:
        return str(item[0]), int(item[1])
    raise InputError(f"query_gallery expects PhantomImage or (patient, visit) items, got {item!r}")


def query_gallery(images_or_keys: Sequence[PhantomImage | tuple[str, int]]) -> QueryGallery:
    """Split a cohort into one query per patient and a gallery of everything else.

    The query visit of a patient is picked by a stable hash of the patient key among that
    patient's visits present in the input, so it does not depend on input order or process.
    Patients with a single image have nothing to be matched against: their image goes to the
    gallery as a distractor.

    Parameters
    ----------
    images_or_keys
        PhantomImage objects or (patient key, visit) pairs.

    Returns
    -------
    QueryGallery
        Sorted positions of query and gallery items.

    Raises
    ------
    InputError
        If an item has the wrong type or a (patient, visit) pair occurs twice.
    """
    by_patient: dict[str, list[tuple[int, int]]] = {}
    seen: set[tuple[str, int]] = set()
    for position, item in enumerate(images_or_keys):
        key = _key(item)
        if key in seen:
            raise InputError(f"patient {key[0]!r} visit {key[1]} occurs twice; keep one copy")
        seen.add(key)
        by_patient.setdefault(key[0], []).append((key[1], position))
    query: list[int] = []
    for patient, visits in by_patient.items():
        if len(visits) >= 2:
            visits.sort()
            query.append(visits[zlib.crc32(patient.encode()) % len(visits)][1])
    chosen = set(query)
    gallery = [p for p in range(len(seen)) if p not in chosen]
    return QueryGallery(query=tuple(sorted(query)), gallery=tuple(gallery))
