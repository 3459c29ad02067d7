"""A `deid synth` release of every dataset reads back through deid.io with the generator's pixels:
DICOM volumes regroup into one record per series, in slice order, in modality units; PNG volumes
are one file per slice, which the truth CSV's slice column puts back in order."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from deid.io import discover, load
from deid.synth import truth_path, write_release
from reid_model.phantoms import DATASETS, render


@pytest.mark.parametrize("fmt", ["dicom", "png"])
def test_every_dataset_reads_back(tmp_path: Path, fmt: str) -> None:
    images = {(d, v): render(d, 0, v, seed=0) for d in DATASETS for v in (0, 1)}
    release = tmp_path / "release"
    write_release(release, images.values(), fmt, seed=0, progress=False)
    with truth_path(release).open(newline="") as handle:
        truth = {row["file"]: row for row in csv.DictReader(handle)}

    found = discover(release)
    assert not found.skipped
    slices: dict[tuple[str, int], list[tuple[int, np.ndarray]]] = {}
    for item in found.items:
        record = load(item)
        assert record.pixels.dtype == np.float32
        if fmt == "dicom":
            assert (
                record.modality
                == DATASETS[truth[item.paths[0].relative_to(release).as_posix()]["dataset"]]
            )
        row = truth[record.paths[0].relative_to(release).as_posix()]
        key = (row["dataset"], int(row["visit"]))
        slices.setdefault(key, []).append((int(row["slice"] or 0), record.pixels))
    assert set(slices) == set(images)  # nothing lost, nothing extra
    for key, image in images.items():
        parts = sorted(slices[key], key=lambda part: part[0])
        if fmt == "dicom":
            assert len(parts) == 1  # a DICOM series is one record
        pixels = (
            np.stack([p for _, p in parts]) if image.is_volume and fmt == "png" else parts[0][1]
        )
        assert pixels.shape == image.pixels.shape
        if image.burn_in_phi:  # the writer drew PHI text into these pixels
            continue
        expected = image.pixels.astype(np.float32)
        if image.is_volume and fmt == "dicom":  # deid.io orders slices by position
            expected = expected[np.argsort(image.slice_positions_mm, kind="stable")]
        if fmt == "png" and key[0] == "chest_ct":
            expected = np.clip(expected + 1024, 0, 65535)  # PNG stores CT as HU + 1024, clipped
        elif fmt == "png" and image.pixels.dtype == np.uint16:
            expected = expected * 2 ** (16 - image.bits_stored)  # left-aligned in 16 bits
        np.testing.assert_array_equal(pixels, expected)
