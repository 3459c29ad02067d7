"""PNG, JPEG, TIFF and NIfTI: reading, the orientation rule, display scaling and round trips."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from deid.errors import OutputError
from deid.io import Record, ReleaseItem, discover, load, sniff, write_like
from deid.io.nifti_io import from_slices, to_slices


def read(path: Path) -> Record:
    kind = sniff(path)
    assert kind is not None
    return load(ReleaseItem(path.name, (path,), kind))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(3)


@pytest.mark.parametrize(
    ("array_dtype", "shape", "mode", "bits"),
    [
        (np.uint8, (6, 7), "L", 8),
        (np.uint16, (6, 7), "I;16", 16),
        (np.uint8, (6, 7, 3), "RGB", 8),
    ],
)
def test_png_round_trip_keeps_mode_and_depth(
    tmp_path: Path,
    rng: np.random.Generator,
    array_dtype: type,
    shape: tuple[int, ...],
    mode: str,
    bits: int,
) -> None:
    stored = rng.integers(0, np.iinfo(array_dtype).max, shape, endpoint=True).astype(array_dtype)
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", "Doe^Jane")
    Image.fromarray(stored).save(tmp_path / "in.png", pnginfo=info)
    record = read(tmp_path / "in.png")
    assert (record.kind, record.bits_stored, record.source_dtype) == ("png", bits, array_dtype)
    assert record.metadata["text:Patient"] == "Doe^Jane"
    assert record.photometric == ("RGB" if len(shape) == 3 else "MONOCHROME2")
    np.testing.assert_array_equal(record.pixels, stored)
    write_like(record, record.pixels, [tmp_path / "out.png"])
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == Image.fromarray(stored).mode
        assert "Patient" not in written.info  # identifying text chunks are not copied
    np.testing.assert_array_equal(read(tmp_path / "out.png").pixels, stored)


def test_jpeg_round_trip_is_close(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:32, 0:32]
    stored = (4 * xx + 3 * yy).astype(np.uint8)
    Image.fromarray(stored).save(tmp_path / "in.jpg", quality=95)
    record = read(tmp_path / "in.jpg")
    assert record.kind == "jpeg" and record.pixels.shape == (32, 32)
    write_like(record, record.pixels, [tmp_path / "out.jpg"])
    again = read(tmp_path / "out.jpg")
    assert np.abs(again.pixels - record.pixels).mean() < 2.0


def test_tiff_pages_become_a_volume_and_round_trip(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    pages = rng.integers(0, 65535, (3, 5, 4)).astype(np.uint16)
    images = [Image.fromarray(page) for page in pages]
    images[0].save(tmp_path / "in.tif", save_all=True, append_images=images[1:])
    record = read(tmp_path / "in.tif")
    assert record.pixels.shape == (3, 5, 4) and record.is_volume and record.bits_stored == 16
    np.testing.assert_array_equal(record.pixels, pages)
    write_like(record, record.pixels, [tmp_path / "out.tif"])
    np.testing.assert_array_equal(read(tmp_path / "out.tif").pixels, pages)


def test_float_tiff_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    stored = rng.normal(size=(4, 5)).astype(np.float32)
    Image.fromarray(stored).save(tmp_path / "in.tif")
    record = read(tmp_path / "in.tif")
    assert record.source_dtype == np.float32
    write_like(record, record.pixels * 2, [tmp_path / "out.tif"])
    np.testing.assert_array_equal(read(tmp_path / "out.tif").pixels, stored * 2)


def test_display_uses_robust_percentiles(rng: np.random.Generator, tmp_path: Path) -> None:
    stored = rng.integers(100, 200, (50, 50)).astype(np.uint16)
    stored[0, 0] = 65535  # one hot pixel must not squash the rest of the image
    Image.fromarray(stored).save(tmp_path / "hot.png")
    shown = read(tmp_path / "hot.png").display()
    assert shown.dtype == np.float32 and shown.min() == 0.0 and shown.max() == 1.0
    assert np.median(shown) == pytest.approx(0.5, abs=0.1)


def test_nifti_orientation_rule() -> None:
    ras = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # (X, Y, Z)
    slices = to_slices(ras)
    assert slices.shape == (4, 3, 2)
    # S = z (inferior first); H = anterior first (y reversed); W = patient right first (x reversed).
    assert slices[1, 0, 0] == ras[1, 2, 1]
    np.testing.assert_array_equal(from_slices(slices), ras)


@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz"])
def test_nifti_round_trip_keeps_header_scaling_and_orientation(
    tmp_path: Path, rng: np.random.Generator, name: str
) -> None:
    stored = rng.integers(-500, 500, (3, 4, 5)).astype(np.int16)
    affine = np.diag([-2.0, 1.5, 3.0, 1.0])  # x flipped (LAS): reading must reorient
    image = nib.Nifti1Image(stored, affine)
    image.header.set_slope_inter(0.5, 10.0)
    image.header["descrip"] = b"study 42"
    image.to_filename(tmp_path / name)
    record = read(tmp_path / name)
    ras = (stored * 0.5 + 10.0)[::-1]  # LAS → RAS flips x
    np.testing.assert_array_equal(record.pixels, to_slices(ras))
    assert record.metadata["descrip"] == "study 42"
    assert record.metadata["gzip"] is name.endswith(".gz")
    out = tmp_path / "out" / name
    write_like(record, record.pixels + 1.0, [out])
    written = nib.load(out)
    assert written.get_data_dtype() == np.int16
    np.testing.assert_array_equal(written.affine, affine)
    assert (written.dataobj.slope, written.dataobj.inter) == (0.5, 10.0)
    np.testing.assert_array_equal(np.asarray(written.dataobj.get_unscaled()), stored + 2)
    assert (out.read_bytes()[:2] == b"\x1f\x8b") is name.endswith(".gz")


def test_nifti_pair_is_one_item_and_refuses_to_be_rewritten(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    nib.Nifti1Pair(data, np.eye(4)).to_filename(tmp_path / "pair.hdr")
    found = discover(tmp_path)
    assert found.skipped == [] and [item.key for item in found.items] == ["pair.hdr"]
    record = load(found.items[0])
    np.testing.assert_array_equal(record.pixels, to_slices(data))
    with pytest.raises(OutputError, match="single .nii"):
        write_like(record, record.pixels, [tmp_path / "out.hdr"])
