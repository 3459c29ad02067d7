"""Tests of the phantom patient generator (reid_model.phantoms)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from deid.errors import InputError
from reid_model.phantoms.findings import FINDING_SPECS, visit_findings
from reid_model.phantoms.generator import FINDINGS, generate, query_gallery, render, split_of
from reid_model.phantoms.types import DATASETS, PhantomImage

VOLUMES = ("chest_ct", "brain_mri")


@lru_cache(maxsize=64)
def _render(dataset: str, patient: int, visit: int, seed: int = 0) -> PhantomImage:
    return render(dataset, patient, visit, seed)


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_render_is_deterministic_and_seed_dependent(dataset: str) -> None:
    first = _render(dataset, 3, 1)
    again = render(dataset, 3, 1, 0)
    assert first.pixels.tobytes() == again.pixels.tobytes()
    assert first.findings == again.findings and first.device == again.device
    other_seed = render(dataset, 3, 1, 1)
    assert other_seed.pixels.tobytes() != first.pixels.tobytes()


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_pixels_have_the_documented_layout(dataset: str) -> None:
    image = _render(dataset, 1, 0)
    px = image.pixels
    assert image.dataset == dataset and image.patient == f"{dataset}-00001"
    assert image.split == split_of(1, 0)
    assert set(image.findings) == set(FINDINGS[dataset])
    assert image.pixel_spacing_mm[0] > 0
    if dataset.startswith("cxr"):
        assert px.dtype == np.uint16 and px.shape == (256, 256)
        assert image.bits_stored in (10, 12, 14) and px.max() < (1 << image.bits_stored)
        assert image.view_position in ("PA", "AP")
        # lungs are darker than the mediastinum: a real dynamic range, not a flat image
        assert np.percentile(px, 95) - np.percentile(px, 5) > 0.3 * (1 << image.bits_stored)
    elif dataset == "chest_ct":
        assert px.dtype == np.int16 and px.ndim == 3 and px.shape[1:] == (256, 256)
        assert px.min() >= -2048 and px.max() > 500  # bone
        assert np.mean(px < -700) > 0.2  # air and lung
        body = px[(px > -200) & (px < 200)]
        assert body.size > 0.05 * px.size and abs(float(np.median(body))) < 80
    elif dataset == "brain_mri":
        assert px.dtype == np.uint16 and px.ndim == 3 and px.shape[1:] == (256, 256)
        assert image.bits_stored == 12 and px.max() < 4096 and px.max() > 1500
    else:
        assert px.dtype == np.uint8 and px.shape == (256, 256, 3)
        assert image.laterality in ("L", "R")
        corner, centre = px[:12, :12].mean(), px[96:160, 96:160].mean()
        assert corner < 10 < centre  # circular field of view, black outside
        assert px[96:160, 96:160, 0].mean() > px[96:160, 96:160, 2].mean()  # reddish fundus


@pytest.mark.parametrize("dataset", VOLUMES)
def test_volumes_have_8_to_32_evenly_spaced_slices(dataset: str) -> None:
    counts = set()
    for visit in range(3):
        image = _render(dataset, 2, visit)
        n = image.pixels.shape[0]
        counts.add(n)
        assert 8 <= n <= 32 and image.is_volume
        assert len(image.slice_positions_mm) == n
        steps = np.diff(image.slice_positions_mm)
        assert np.allclose(np.abs(steps), image.slice_thickness_mm, atol=1e-3)
        assert np.all(np.sign(steps) == np.sign(steps[0]))
    assert len(counts) > 1 or dataset == "brain_mri"  # slice count varies between visits


def test_identity_and_metadata_across_visits() -> None:
    visits = [_render("fundus", 4, v) for v in range(3)]
    assert len({v.laterality for v in visits}) == 1  # one eye per patient
    days = [v.days_since_first_visit for v in visits]
    assert days[0] == 0 and days[1] >= 60 and days[2] > days[1]
    assert render("fundus", 4, 2, 0).days_since_first_visit == days[2]  # random access


def test_burned_in_text_is_only_requested_for_radiographs() -> None:
    flags = [render("cxr_site_b", p, 0).burn_in_phi for p in range(25)]
    assert 0 < sum(flags) < 12
    assert not _render("fundus", 1, 0).burn_in_phi


def test_devices_are_shared_across_patients() -> None:
    devices = [render("cxr_site_a", p, 0).device for p in range(12)]
    assert len(set(devices)) >= 2
    assert max(devices.count(d) for d in set(devices)) >= 2
    assert all(d.startswith("siteA") for d in devices)


# Focal findings must change a local region only; diffuse ones (heart size, atrophy) may
# touch more but must still be visible.
_FOCAL_LIMIT = {"cardiomegaly": 0.25, "atrophy": 0.6}


@pytest.mark.parametrize(
    ("dataset", "finding"),
    [(d, f) for d in DATASETS if d != "cxr_site_b" for f in FINDINGS[d]],
)
def test_findings_change_pixels_locally(dataset: str, finding: str) -> None:
    with_f = render(dataset, 5, 1, findings={finding: True}).pixels.astype(np.float64)
    without = render(dataset, 5, 1, findings={finding: False}).pixels.astype(np.float64)
    assert with_f.shape == without.shape
    diff = np.abs(with_f - without)
    if dataset == "fundus":
        diff = diff.max(axis=-1)
    scale = max(float(np.percentile(without, 99) - np.percentile(without, 1)), 1.0)
    strongly = diff > 0.08 * scale
    # volumes: judge the slice the finding affects most
    fraction = strongly.reshape(-1, 256 * 256).mean(axis=1).max()
    assert fraction > 0.0005, f"{finding} is not visible"
    assert fraction < _FOCAL_LIMIT.get(finding, 0.12), f"{finding} changes too much of the image"


def test_finding_override_rejects_unknown_names() -> None:
    with pytest.raises(InputError, match="no finding"):
        render("fundus", 0, 0, findings={"nodule": True})


def test_finding_prevalence_and_persistence() -> None:
    for dataset, specs in FINDING_SPECS.items():
        table = np.array(
            [
                [[visit_findings(0, dataset, p, v)[s.name] for s in specs] for v in range(3)]
                for p in range(300)
            ]
        )
        prevalence = table.mean(axis=(0, 1))
        assert np.all((prevalence > 0.12) & (prevalence < 0.45)), (dataset, prevalence)
        for k, spec in enumerate(specs):
            if spec.persistent:  # once present, always present
                assert not np.any(table[:, :-1, k] & ~table[:, 1:, k])
            else:  # transient findings come and go
                assert np.any(table[:, :-1, k] & ~table[:, 1:, k])


def test_splits_are_stable_disjoint_and_sized() -> None:
    splits = [split_of(i) for i in range(3000)]
    assert splits == [split_of(i, 0) for i in range(3000)]
    fractions = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert abs(fractions["train"] - 0.6) < 0.04
    assert abs(fractions["val"] - 0.2) < 0.04 and abs(fractions["test"] - 0.2) < 0.04
    assert [split_of(i, 1) for i in range(200)] != splits[:200]


def test_generate_filters_by_split_and_validates() -> None:
    test_patients = [i for i in range(15) if split_of(i) == "test"]
    images = list(generate(["cxr_site_a"], n_patients=15, n_visits=2, splits=["test"]))
    assert [(im.patient_index, im.visit) for im in images] == [
        (p, v) for p in test_patients for v in range(2)
    ]
    assert all(im.split == "test" for im in images)
    with pytest.raises(InputError, match="unknown phantom dataset"):
        generate(["xray"], 2, 2)
    with pytest.raises(InputError, match="sequence of names"):
        generate("fundus", 2, 2)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown split"):
        generate(["fundus"], 2, 2, splits=["holdout"])
    with pytest.raises(InputError, match="non-negative"):
        render("fundus", -1, 0)


def test_query_gallery_protocol() -> None:
    keys = [(f"p{p}", v) for p in range(6) for v in range(3)] + [("single", 0)]
    qg = query_gallery(keys)
    queried = [keys[i][0] for i in qg.query]
    assert sorted(queried) == [f"p{p}" for p in range(6)]  # one query per patient
    assert set(qg.query).isdisjoint(qg.gallery)
    assert sorted(qg.query + qg.gallery) == list(range(len(keys)))
    assert keys.index(("single", 0)) in qg.gallery  # nothing to match: distractor
    # The chosen visit does not depend on input order.
    shuffled = list(reversed(keys))
    again = query_gallery(shuffled)
    assert {shuffled[i] for i in again.query} == {keys[i] for i in qg.query}
    assert len({keys[i][1] for i in qg.query}) > 1  # not always the same visit number
    with pytest.raises(InputError, match="twice"):
        query_gallery([("a", 0), ("a", 0)])


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_display_slice_is_8bit_rgb(dataset: str) -> None:
    from reid_model.phantoms.display import display_slice

    view = display_slice(_render(dataset, 1, 0))
    assert view.dtype == np.uint8 and view.shape == (256, 256, 3)
    assert view.max() > 200 and view.min() < 40  # uses the display range


def test_random_streams_of_a_patient_are_distinct() -> None:
    from reid_model.phantoms.common import anatomy_rng, stream_key, visit_rng
    from reid_model.phantoms.findings import finding_rng

    # Seed keys never end in 0: SeedSequence would treat [a, b, 0] like [a, b].
    assert stream_key(0, 0, 0, 1, 0)[-1] != 0
    draws = [anatomy_rng(0, "cxr_site_a", 0).random(), visit_rng(0, "cxr_site_a", 0, 0).random()]
    draws += [
        finding_rng(0, "cxr_site_a", 0, f, v, k).random()
        for f in FINDINGS["cxr_site_a"]
        for v in (None, 0, 1)
        for k in (0, 1)
    ]
    draws += [anatomy_rng(0, "cxr_site_b", 0).random(), visit_rng(0, "cxr_site_a", 0, 1).random()]
    assert len(set(draws)) == len(draws)
