"""Discovery by content, and bad files that must become skipped entries instead of errors."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

import deid.io.dicom_read as dicom_read
from deid.errors import InputError
from deid.io import Record, ReleaseItem, Skipped, discover, iter_records, load_or_skip, sniff

CT = Path(get_testdata_file("CT_small.dcm"))
# The package re-exports the function ``discover``, which hides the module of the same name.
discover_module = importlib.import_module("deid.io.discover")


def _png(path: Path) -> Path:
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path, format="PNG")
    return path


def test_sniff_reads_content_not_extension(tmp_path: Path) -> None:
    _png(tmp_path / "scan.dcm")
    Image.new("RGB", (4, 4)).save(tmp_path / "photo.png", format="JPEG")
    Image.new("I;16", (4, 4)).save(tmp_path / "a.jpg", format="TIFF")
    nii = nib.Nifti1Image(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4))
    (tmp_path / "vol.bin").write_bytes(gzip.compress(nii.to_bytes()))
    nib.Nifti2Image(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4)).to_filename(tmp_path / "v2.nii")
    shutil.copy(CT, tmp_path / "image.png")
    (tmp_path / "notes.dcm").write_text("Patient: Jane Doe\n")
    assert sniff(tmp_path / "scan.dcm") == "png"
    assert sniff(tmp_path / "photo.png") == "jpeg"
    assert sniff(tmp_path / "a.jpg") == "tiff"
    assert sniff(tmp_path / "vol.bin") == "nifti"
    assert sniff(tmp_path / "v2.nii") == "nifti"
    assert sniff(tmp_path / "image.png") == "dicom"
    assert sniff(tmp_path / "notes.dcm") is None


@pytest.mark.parametrize(
    "name", ["ExplVR_LitEndNoMeta.dcm", "ExplVR_BigEndNoMeta.dcm", "rtstruct.dcm"]
)
def test_sniff_finds_dicom_without_preamble(name: str) -> None:
    path = Path(get_testdata_file(name))
    assert path.read_bytes()[128:132] != b"DICM"
    assert sniff(path) == "dicom"


def test_dicom_without_preamble_decodes(tmp_path: Path) -> None:
    ds = pydicom.dcmread(CT)
    bare = tmp_path / "bare"
    pydicom.dcmwrite(bare, ds, implicit_vr=False, little_endian=True, force_encoding=True)
    bare.write_bytes(bare.read_bytes()[132:])  # drop the preamble and 'DICM'
    assert sniff(bare) == "dicom"
    record = load_or_skip(ReleaseItem("bare", (bare,), "dicom"))
    assert isinstance(record, Record)
    np.testing.assert_array_equal(record.pixels, pydicom.dcmread(CT).pixel_array * 1.0 - 1024)


def _garbage_release(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "empty.dcm").write_bytes(b"")
    data = CT.read_bytes()
    (root / "truncated_pixels.dcm").write_bytes(data[: len(data) - 5000])
    (root / "truncated_header.dcm").write_bytes(data[:300])
    (root / "readme.dcm").write_text("not an image\n")
    _png(root / "sub" / "renamed.dcm")
    shutil.copy(CT, root / "sub" / "good")


def test_bad_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    _garbage_release(tmp_path)
    results = list(iter_records(tmp_path))
    records = {r.key: r for r in results if isinstance(r, Record)}
    skipped = {r.path.name: r.reason for r in results if isinstance(r, Skipped)}
    assert set(records) == {"sub/good", "sub/renamed.dcm"}
    assert records["sub/renamed.dcm"].kind == "png"
    assert set(skipped) == {
        "empty.dcm",
        "truncated_pixels.dcm",
        "truncated_header.dcm",
        "readme.dcm",
    }
    assert "empty" in skipped["empty.dcm"]
    assert "not a recognised image format" in skipped["readme.dcm"]
    assert "less than expected" in skipped["truncated_pixels.dcm"]
    assert all(reason.strip() for reason in skipped.values())


def test_permission_denied_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, where chmod 000 does not stop reading: simulate the OS refusing.
    shutil.copy(CT, tmp_path / "locked.dcm")
    shutil.copy(CT, tmp_path / "open.dcm")
    real_sniff = discover_module.sniff

    def refusing_sniff(path: Path) -> str | None:
        if Path(path).name == "locked.dcm":
            raise PermissionError(13, "Permission denied")
        return real_sniff(path)

    monkeypatch.setattr(discover_module, "sniff", refusing_sniff)
    found = discover(tmp_path)
    assert [item.key for item in found.items] == ["open.dcm"]
    assert found.skipped == [
        Skipped(tmp_path / "locked.dcm", "permission denied; grant read access")
    ]

    def refusing_read(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(dicom_read.pydicom, "dcmread", refusing_read)
    result = load_or_skip(found.items[0])
    assert result == Skipped(tmp_path / "open.dcm", "permission denied; grant read access")


def test_unsupported_codec_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.8.498.77"  # a vendor codec
    ds.save_as(tmp_path / "jxl.dcm", implicit_vr=False, little_endian=True)
    result = load_or_skip(ReleaseItem("jxl.dcm", (tmp_path / "jxl.dcm",), "dicom"))
    assert isinstance(result, Skipped) and "transfer syntax" in result.reason

    class MissingDecoder:
        is_available = False
        missing_dependencies = {"pyjpegls": "pyjpegls - requires pyjpegls>=1.2"}

    monkeypatch.setattr(dicom_read, "get_decoder", lambda syntax: MissingDecoder())
    result = load_or_skip(ReleaseItem("jxl.dcm", (tmp_path / "jxl.dcm",), "dicom"))
    assert isinstance(result, Skipped)
    assert "requires pyjpegls" in result.reason and "pip install" in result.reason


def test_unexpected_decoder_failure_does_not_escape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(CT, tmp_path / "ct.dcm")

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("decoder bug")

    monkeypatch.setattr(discover_module, "load_dicom", broken)
    (result,) = list(iter_records(tmp_path))
    assert isinstance(result, Skipped) and "ZeroDivisionError" in result.reason


def test_discovery_is_deterministic_and_excludes(tmp_path: Path) -> None:
    for name in ("c.png", "a.png", "b/d.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        _png(tmp_path / name)
    keys = [item.key for item in discover(tmp_path).items]
    assert keys == ["a.png", "b/d.png", "c.png"]
    kept = discover(tmp_path, exclude=lambda path: path.name.startswith("a")).items
    assert [item.key for item in kept] == ["b/d.png", "c.png"]
    with pytest.raises(InputError, match="does not exist"):
        discover(tmp_path / "missing")
    assert [item.key for item in discover(tmp_path / "c.png").items] == ["c.png"]


def test_workers_preserve_order_and_inputs_stay_untouched(tmp_path: Path) -> None:
    _garbage_release(tmp_path)
    for index in range(3):
        _png(tmp_path / f"img{index}.png")
    digest = {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*") if p.is_file()
    }
    serial = list(iter_records(tmp_path))
    parallel = list(iter_records(tmp_path, workers=2))
    assert [type(r).__name__ for r in serial] == [type(r).__name__ for r in parallel]
    assert [getattr(r, "key", None) for r in serial] == [getattr(r, "key", None) for r in parallel]
    for a, b in zip(serial, parallel, strict=True):
        if isinstance(a, Record):
            np.testing.assert_array_equal(a.pixels, b.pixels)
    after = {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*") if p.is_file()
    }
    assert after == digest
