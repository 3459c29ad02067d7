"""Group single-frame DICOM files into volumes by series and order their slices.

Rule: files of one SeriesInstanceUID with the same size, samples and orientation form a volume
when every one has ImagePositionPatient and ImageOrientationPatient and no two share a position;
slices are then ordered along the slice normal (row × column direction cosines), ascending.
Without positions, CT/MR/PT files with distinct InstanceNumbers are stacked in that order.
Anything else (for example two radiograph views in one series) stays one record per file.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

VOLUMETRIC_MODALITIES = frozenset({"CT", "MR", "PT"})


@dataclass(frozen=True)
class SliceInfo:
    """What grouping needs from one DICOM header."""

    path: Path
    series: str
    modality: str
    frames: int
    geometry: tuple[int, int, int]  # rows, columns, samples per pixel
    orientation: tuple[float, ...] | None
    position: tuple[float, float, float] | None
    instance: int | None

    @classmethod
    def from_dataset(cls, path: Path, ds: Dataset) -> SliceInfo:
        def floats(keyword: str, count: int) -> tuple[float, ...] | None:
            try:
                value = [float(v) for v in ds.get(keyword) or []]
            except (TypeError, ValueError):
                return None
            return tuple(value) if len(value) == count else None

        try:
            instance = (
                int(ds.get("InstanceNumber")) if ds.get("InstanceNumber") is not None else None
            )
        except (TypeError, ValueError):
            instance = None
        position = floats("ImagePositionPatient", 3)
        return cls(
            path=path,
            series=str(ds.get("SeriesInstanceUID", "")),
            modality=str(ds.get("Modality", "")).strip(),
            frames=int(ds.get("NumberOfFrames", 1) or 1),
            geometry=(
                int(ds.get("Rows", 0)),
                int(ds.get("Columns", 0)),
                int(ds.get("SamplesPerPixel", 1)),
            ),
            orientation=floats("ImageOrientationPatient", 6),
            position=position if position is None else (position[0], position[1], position[2]),
            instance=instance,
        )


def order_slices(group: list[SliceInfo]) -> list[SliceInfo] | None:
    """The group's slices in volume order, or ``None`` if they should not be stacked."""
    if all(s.position is not None and s.orientation is not None for s in group):
        cosines = np.asarray(group[0].orientation, dtype=np.float64)
        normal = np.cross(cosines[:3], cosines[3:])
        depth = [float(np.dot(normal, s.position)) for s in group]  # type: ignore[arg-type]
        if len({round(d, 4) for d in depth}) == len(group):
            return [s for _, s in sorted(zip(depth, group, strict=True), key=lambda pair: pair[0])]
        return None
    instances = [s.instance for s in group]
    volumetric = group[0].modality in VOLUMETRIC_MODALITIES
    if volumetric and None not in instances and len(set(instances)) == len(group):
        return sorted(group, key=lambda s: s.instance or 0)
    return None


def group_slices(slices: list[SliceInfo]) -> list[list[SliceInfo]]:
    """Split DICOM files into units: stacked series volumes, or single files.

    Multi-frame files and files without a SeriesInstanceUID are always their own unit.
    Units come back in the order of their first member in ``slices``.
    """
    groups: dict[tuple[object, ...], list[SliceInfo]] = defaultdict(list)
    units: list[list[SliceInfo]] = []
    for info in slices:
        if info.frames > 1 or not info.series:
            units.append([info])
            continue
        orientation = (
            None if info.orientation is None else tuple(round(v, 3) for v in info.orientation)
        )
        key = (info.series, info.geometry, orientation)
        if key not in groups:
            units.append(groups[key])  # placeholder keeps first-seen order
        groups[key].append(info)
    result: list[list[SliceInfo]] = []
    for unit in units:
        if len(unit) == 1:
            result.append(unit)
            continue
        ordered = order_slices(unit)
        result.extend([ordered] if ordered is not None else [[s] for s in unit])
    return result
