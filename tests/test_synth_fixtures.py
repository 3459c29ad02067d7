"""Hand-made phantom images for the deid.synth tests (small arrays, every dataset)."""

from __future__ import annotations

import numpy as np
import pytest

from reid_model.phantoms.types import DATASETS, PhantomImage

FINDINGS = {
    "cxr_site_a": {"opacity": True, "effusion": False},
    "cxr_site_b": {"opacity": False, "effusion": True},
    "chest_ct": {"nodule": True, "ground_glass": False},
    "fundus": {"exudates": True},
    "brain_mri": {"atrophy": False},
}


def phantom(
    dataset: str,
    patient_index: int = 0,
    visit: int = 0,
    *,
    burn: bool = False,
    size: int = 48,
    slices: int = 3,
) -> PhantomImage:
    """A small random PhantomImage of ``dataset`` with the layout the generator promises."""
    rng = np.random.default_rng([patient_index, visit, list(DATASETS).index(dataset)])
    positions = None
    if dataset in ("cxr_site_a", "cxr_site_b"):
        pixels = rng.integers(0, 2**12, (size, size + 8)).astype(np.uint16)
    elif dataset == "chest_ct":
        pixels = rng.integers(-1024, 1500, (slices, size, size)).astype(np.int16)
        positions = tuple(-50.0 + 2.5 * i for i in range(slices))
    elif dataset == "brain_mri":
        pixels = rng.integers(0, 2**12, (slices, size, size + 4)).astype(np.uint16)
        positions = tuple(10.0 + 5.0 * i for i in range(slices))
    else:
        pixels = rng.integers(0, 256, (size, size + 3, 3)).astype(np.uint8)
    return PhantomImage(
        dataset=dataset,
        patient=f"{dataset}-{patient_index:05d}",
        patient_index=patient_index,
        visit=visit,
        split=("train", "val", "test")[patient_index % 3],
        pixels=pixels,
        bits_stored={"chest_ct": 16, "fundus": 8}.get(dataset, 12),
        findings=FINDINGS[dataset],
        days_since_first_visit=visit * 190,
        pixel_spacing_mm=(0.7, 0.8),
        slice_thickness_mm=2.5 if positions else None,
        slice_positions_mm=positions,
        laterality="L" if dataset == "fundus" else None,
        view_position="PA" if dataset.startswith("cxr") else None,
        device=f"{dataset}-style-1",
        burn_in_phi=burn,
    )


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_factory_matches_the_documented_layout(dataset: str) -> None:
    image = phantom(dataset)
    expected_ndim = 3 if dataset in ("chest_ct", "brain_mri", "fundus") else 2
    assert image.pixels.ndim == expected_ndim
    assert image.is_volume == (dataset in ("chest_ct", "brain_mri"))
