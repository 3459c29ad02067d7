"""The pixel-cleaner hook: new pixels land in the safe copy with the metadata still scrubbed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, PngImagePlugin
from test_scrub_folders import tiny_dicom

from deid.io.record import Record
from deid.scrub import scrub_release


class AddSeven:
    """A stand-in cleaner (module level, so worker processes can unpickle it) that keeps
    per-record metrics the way the pixel optimizer does."""

    def __init__(self) -> None:
        self.metrics: dict[str, dict[str, float]] = {}

    def __call__(self, record: Record) -> np.ndarray:
        self.metrics[record.key] = {"linf": 7.0, "voxels": float(record.pixels.size)}
        return record.pixels + 7


def test_cleaner_output_is_written_with_clean_pixel_code(tmp_path: Path) -> None:
    release = tmp_path / "rel"
    for i in range(3):  # one series of three slices: cleaned as one volume
        tiny_dicom(release / f"s{i}.dcm", "ROE", i, series="1.2.3.4")
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Richard Roe")
    Image.fromarray(np.full((5, 6), 40, np.uint8)).save(release / "roe.png", pnginfo=info)
    key = tmp_path / "k.key"
    key.write_text("11" * 32)
    key.chmod(0o600)
    serial = scrub_release(release, tmp_path / "a", key_file=key, pixel_cleaner=AddSeven())
    scrub_release(release, tmp_path / "b", key_file=key, pixel_cleaner=AddSeven(), workers=2)
    assert serial.counts == {"written": 4}
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert {e["pixels"] for e in manifest["files"]} == {"cleaned"}
    metrics = sorted(e["pixel_metrics"]["voxels"] for e in manifest["files"])
    assert metrics == [30.0, 48.0, 48.0, 48.0]  # the PNG, then each slice of the 3x4x4 volume
    assert manifest == json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "113101" in manifest["header"]["codes"] and manifest["header"]["pixel_cleaner"]
    for entry in manifest["files"]:
        a = (tmp_path / "a" / entry["output"]).read_bytes()
        assert a == (tmp_path / "b" / entry["output"]).read_bytes()
        if entry["kind"] == "png":
            with Image.open(tmp_path / "a" / entry["output"]) as image:
                assert np.all(np.asarray(image) == 47) and "Author" not in image.info
            assert b"Roe" not in a
            continue
        ds = pydicom.dcmread(tmp_path / "a" / entry["output"])
        source = pydicom.dcmread(release / f"s{int(ds.InstanceNumber) - 1}.dcm")
        np.testing.assert_array_equal(ds.pixel_array, source.pixel_array + 7)
        assert "113101" in [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
        assert "ROE" not in str(ds.PatientName) and ds.PatientIdentityRemoved == "YES"
    assert not (tmp_path / "a" / ".deid-work").exists()
