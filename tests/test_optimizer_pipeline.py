"""The pixel cleaner inside ``scrub_release``: built from checkpoints on disk like the CLI does,
its pixels land in the safe copy and its measurements in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from test_optimizer import _anatomy, _ct_file

from deid.errors import CheckpointError, InputError, OutputError
from deid.scrub import scrub_release
from deid.scrub.pixel_cleaner import make_pixel_cleaner
from reid_model.checkpoint import save_checkpoint
from reid_model.config import load_preset
from reid_model.mfm import PhantomMFMConfig, PhantomMFMNet, save_phantom_mfm
from reid_model.model import build_model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_tiny_adversary(tmp_path_factory.mktemp("ckpt"))


def save_tiny_adversary(root: Path) -> tuple[Path, Path]:
    """A random ``test``-preset re-identifier and a tiny phantom MFM: (reid, mfm) folders."""
    cfg, _ = load_preset("test")
    torch.manual_seed(0)
    save_checkpoint(root / "reid", build_model(cfg, with_mfm=False), cfg)
    mfm_cfg = PhantomMFMConfig(findings=("a",), modalities=("x",), img_size=32, depth=1)
    save_phantom_mfm(root / "mfm", PhantomMFMNet(mfm_cfg))
    return root / "reid", root / "mfm"


def test_scrub_release_with_pixel_cleaner(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    reid, mfm = checkpoints
    release = tmp_path / "release"
    release.mkdir()
    rng = np.random.default_rng(0)
    sources = []
    for i in range(2):
        sources.append((_anatomy(rng, (32, 32)) * 1500).astype(np.uint16))
        _ct_file(release / f"ct{i}.dcm", f"P{i}", sources[i])
    _ct_file(release / "ct2.dcm", "P0", sources[0] + 5)  # a second image of patient P0
    cleaner = make_pixel_cleaner(
        [reid],
        strength="low",
        mfm_specs=[f"phantom-mfm:{mfm}"],
        release=release,
        steps=3,
        eot_samples=1,
    )
    assert cleaner.references is not None and sorted(cleaner.references.keys) == ["P0", "P1"]
    key = tmp_path / "k.key"
    key.write_text("22" * 32)
    key.chmod(0o600)
    summary = scrub_release(release, tmp_path / "out", key_file=key, pixel_cleaner=cleaner)
    assert summary.counts == {"written": 3}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    recorded = manifest["header"]["pixel_settings"]
    assert recorded["strength"] == "custom" and recorded["steps"] == 3
    assert recorded["epsilon"] == 0.015 and recorded["eot_samples"] == 1
    for entry in manifest["files"]:
        metrics = entry["pixel_metrics"]
        assert entry["pixels"] == "cleaned" and 0.0 < metrics["ssim"] <= 1.0
        assert metrics["linf_unit"] <= 0.015 + 1e-3 and "mfm_similarity" in metrics
        ds = pydicom.dcmread(tmp_path / "out" / entry["output"])
        assert ds.pixel_array.dtype == np.uint16 and ds.BitsStored == 12
        # the output is its source plus a small change in stored units (slope 2: linf / 2)
        diffs = [
            np.abs(ds.pixel_array.astype(int) - s.astype(int)).max()
            for s in (*sources, sources[0] + 5)
        ]
        assert 0 < min(diffs) <= metrics["linf"] / 2 + 0.5


def test_resume_refuses_other_pixel_settings(
    checkpoints: tuple[Path, Path], tmp_path: Path
) -> None:
    reid, mfm = checkpoints
    release = tmp_path / "release"
    release.mkdir()
    _ct_file(
        release / "ct0.dcm",
        "P0",
        (_anatomy(np.random.default_rng(1), (32, 32)) * 900).astype(np.uint16),
    )
    key = tmp_path / "k.key"
    key.write_text("33" * 32)
    key.chmod(0o600)

    def cleaner(steps: int | None):
        return make_pixel_cleaner(
            [reid], strength="low", mfm_specs=[f"phantom-mfm:{mfm}"], steps=steps, eot_samples=1
        )

    scrub_release(release, tmp_path / "out", key_file=key, pixel_cleaner=cleaner(2))
    with pytest.raises(OutputError, match="pixel_settings"):
        scrub_release(
            release, tmp_path / "out", key_file=key, pixel_cleaner=cleaner(3), resume=True
        )
    assert make_pixel_cleaner([reid], strength="low", mfm_specs=[]).describe()["strength"] == "low"


def test_factory_reports_bad_options(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    reid, _ = checkpoints
    with pytest.raises(InputError, match="strength"):
        make_pixel_cleaner([reid], strength="max")
    with pytest.raises(CheckpointError):
        make_pixel_cleaner([tmp_path / "missing"], mfm_specs=[])
    with pytest.raises(InputError, match="checkpoint"):
        make_pixel_cleaner([], mfm_specs=[])
