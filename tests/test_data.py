"""Data sources, the re-identification dataset and the training augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deid.errors import InputError
from reid_model.config import PreprocessConfig
from reid_model.data import (
    AugmentConfig,
    ImageEntry,
    PhantomSource,
    ReidDataset,
    ReleaseSource,
    augment,
    label_map,
    open_source,
    split_entries,
)

PRE = PreprocessConfig(img_size=32, interpolation="bilinear")


class ToySource:
    """Three patients; patient 2 has CT volumes of 8 slices, the others 2D radiographs."""

    def __init__(self) -> None:
        self.entries = [
            ImageEntry(f"p{p}", "ct" if p == 2 else "xr", v, "train", key=(p, v))
            for p in (2, 0, 1)
            for v in range(2)
        ]

    def load(self, entry: ImageEntry) -> tuple[np.ndarray, str]:
        p, v = entry.key
        rng = np.random.default_rng([p, v])
        if p == 2:
            return rng.normal(size=(8, 40, 40)).astype(np.float32) * 100, "CT"
        return rng.uniform(0, 4095, size=(48, 40)).astype(np.float32), "CR"


def test_phantom_spec_lists_every_visit_with_its_split() -> None:
    from reid_model.phantoms.protocol import split_of

    source = open_source("phantom:cxr_site_a,fundus:3:2:5")
    assert isinstance(source, PhantomSource)
    assert len(source.entries) == 2 * 3 * 2
    assert source.seed == 5
    for entry in source.entries:
        assert entry.split == split_of(entry.key[1], 5)
    assert {e.patient for e in source.entries} >= {"cxr_site_a-00000", "fundus-00002"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("phantom:cxr_site_a:3", "expected phantom:"),
        ("phantom:all:x:2", "expected phantom:"),
        ("phantom:nope:3:2", "unknown phantom dataset"),
        ("phantom:all:0:2", "at least 1 patient"),
    ],
)
def test_bad_phantom_specs_say_what_to_write(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        open_source(spec)


def test_release_folder_needs_its_truth_csv(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_source(str(tmp_path / "missing"))
    (tmp_path / "rel").mkdir()
    with pytest.raises(InputError, match="no truth CSV"):
        open_source(str(tmp_path / "rel"))
    (tmp_path / "rel.truth.csv").write_text("file,patient\nx.png,p\n")
    with pytest.raises(InputError, match="lacks column"):
        open_source(str(tmp_path / "rel"))


def test_release_source_groups_slices_and_reads_findings(tmp_path) -> None:
    folder = tmp_path / "rel"
    (folder / "vol").mkdir(parents=True)
    (folder / "z_copy").mkdir()
    rng = np.random.default_rng(0)
    images = {
        "a0.png": rng.integers(0, 255, (20, 24), dtype=np.uint8),
        "a1.png": rng.integers(0, 255, (20, 24), dtype=np.uint8),
        "vol/slice_001.png": np.full((16, 16), 200, dtype=np.uint8),
        "vol/slice_000.png": np.full((16, 16), 10, dtype=np.uint8),
    }
    images["z_copy/a0.png"] = images["a0.png"]  # the same visit in a second format
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / name)
    rows = [
        "file,patient,dataset,visit,split,slice,nodule,atrophy",
        "a0.png,pa,cxr_site_a,0,train,,1,",
        "z_copy/a0.png,pa,cxr_site_a,0,train,,1,",
        "a1.png,pa,cxr_site_a,1,train,,0,",
        "vol/slice_001.png,pb,brain_mri,0,val,1,,1",
        "vol/slice_000.png,pb,brain_mri,0,val,0,,1",
    ]
    (tmp_path / "rel.truth.csv").write_text("\n".join(rows) + "\n")

    source = open_source(str(tmp_path / "rel.truth.csv"))
    assert isinstance(source, ReleaseSource)
    assert [(e.patient, e.visit, e.split) for e in source.entries] == [
        ("pb", 0, "val"),
        ("pa", 0, "train"),
        ("pa", 1, "train"),
    ]
    volume, first = source.entries[0], source.entries[1]
    assert first.key == ("a0.png",)  # of two copies of a visit, the first by path is used
    assert volume.key == ("vol/slice_000.png", "vol/slice_001.png")  # slice order
    assert volume.findings == {"atrophy": True}  # empty cells: not labelled for this dataset
    assert first.findings == {"nodule": True}
    pixels, _ = source.load(volume)
    assert pixels.shape == (2, 16, 16) and pixels.dtype == np.float32
    assert pixels[0].mean() < pixels[1].mean()
    np.testing.assert_array_equal(source.load(first)[0], images["a0.png"])


def test_split_entries_rejects_empty_or_unknown_splits() -> None:
    source = ToySource()
    assert len(split_entries(source, "train")) == 6
    with pytest.raises(InputError, match="no 'val' images"):
        split_entries(source, "val")
    with pytest.raises(InputError, match="unknown split"):
        split_entries(source, "dev")


def test_dataset_labels_are_contiguous_in_patient_order() -> None:
    source = ToySource()
    dataset = ReidDataset(source, source.entries, PRE)
    assert label_map(source.entries) == {"p0": 0, "p1": 1, "p2": 2}
    assert dataset.labels == [2, 2, 0, 0, 1, 1]
    sample = dataset[0]
    assert sample.pixels.shape == (8, 3, 32, 32)  # volume mode keeps the stack
    assert (sample.label, sample.patient, sample.dataset, sample.visit) == (2, "p2", "ct", 0)
    assert dataset[2].pixels.shape == (3, 32, 32)


def test_slice_mode_draws_from_the_middle_half_reproducibly() -> None:
    source = ToySource()
    dataset = ReidDataset(source, source.entries, PRE, volume_mode="slice")
    full = dataset.preprocessed(0)
    assert torch.equal(dataset[0].pixels, full[4])  # centre slice before any seed
    picks = set()
    for seed in range(40):
        dataset.set_slice_seed(seed)
        x = dataset[0].pixels
        index = next(i for i in range(8) if torch.equal(full[i], x))
        picks.add(index)
        dataset.set_slice_seed(seed)
        assert torch.equal(dataset[0].pixels, x)
    assert picks == {2, 3, 4, 5}


def test_preload_caches_the_same_tensors() -> None:
    source = ToySource()
    fresh = ReidDataset(source, source.entries, PRE)
    cached = ReidDataset(source, source.entries, PRE)
    cached.preload()
    assert cached.cached and not fresh.cached
    for i in range(len(fresh)):
        torch.testing.assert_close(cached[i].pixels, fresh[i].pixels, atol=2e-2, rtol=1e-2)


def test_augment_is_seeded_and_keeps_shape() -> None:
    x = torch.randn(4, 3, 32, 32)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    c = augment(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, x)
    identity = AugmentConfig(
        min_area=1.0, max_shift=0, max_rotation_deg=0, brightness=0, contrast=0
    )
    torch.testing.assert_close(augment(x, torch.Generator(), identity), x, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        augment(x[0], torch.Generator())


def test_process_cache_evicts_oldest_beyond_its_byte_budget() -> None:
    from reid_model.data import _TensorCache

    cache = _TensorCache(max_bytes=16)
    for name in "abc":
        cache.put(name, torch.zeros(2, dtype=torch.float32))  # 8 bytes each
    assert cache.get("a") is None and cache.get("b") is not None and cache.get("c") is not None
    assert cache.used == 16
    cache.put("big", torch.zeros(5, dtype=torch.float32))  # over the budget: not kept
    assert cache.get("big") is None and cache.used == 16
