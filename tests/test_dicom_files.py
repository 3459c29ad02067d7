"""De-identification of real-world files: pydicom's bundled test files and pydicom-data."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data.data_manager import DATA_ROOT
from pydicom.errors import InvalidDicomError

from deid.dicom.options import ProfileOptions
from deid.dicom.profile import deidentify

KEY = b"\x07" * 32
BUNDLED = sorted((Path(DATA_ROOT) / "test_files").glob("*.dcm"))


def _pydicom_data_files() -> list[Path]:
    try:
        import data_store  # the pydicom-data package
    except ImportError:
        return []
    return sorted((Path(data_store.__file__).parent / "data").glob("*.dcm"))


def _read(path: Path) -> pydicom.Dataset:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError) as exc:  # not a DICOM file: the reader's job
        pytest.skip(f"{path.name} is not readable as DICOM: {exc}")


def _roundtrip(path: Path, options: ProfileOptions) -> tuple[pydicom.Dataset, bytes]:
    ds = _read(path)
    pixels = ds.get("PixelData")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # real-world files hold values pydicom warns about
        deidentify(ds, options, KEY)
        ds.save_as(buffer)
        back = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    assert back.get("PixelData") == pixels  # bit-identical, compressed or not
    return back, buffer.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")  # invalid values in pydicom's test files
def test_every_bundled_file_deidentifies_with_pixels_untouched():
    assert len(BUNDLED) > 50
    done = 0
    for path in BUNDLED:
        try:
            back, _ = _roundtrip(path, ProfileOptions())
        except pytest.skip.Exception:
            continue
        assert back.PatientIdentityRemoved == "YES", path.name
        assert not any(e.tag.is_private for e in back.iterall()), path.name
        done += 1
    assert done > 50


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pydicom_data_files_deidentify_with_pixels_untouched():
    files = _pydicom_data_files()
    if not files:
        pytest.skip("pydicom-data is not installed")
    for path in files:
        try:
            back, _ = _roundtrip(path, ProfileOptions(retain_long_modified_dates=True))
        except pytest.skip.Exception:
            continue
        if "PatientID" in back:
            assert back.PatientID.startswith("P"), path.name


def test_patient_name_of_a_real_file_is_gone():
    path = Path(DATA_ROOT) / "test_files" / "CT_small.dcm"
    original = _read(path)
    name, pid = str(original.PatientName).encode(), str(original.PatientID).encode()
    _, out = _roundtrip(path, ProfileOptions())
    assert name not in out and pid not in out
    assert str(original.StudyInstanceUID).encode() not in out


# Files whose IODs dciodvfy knows and pydicom writes back faithfully.
DCIODVFY_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "examples_overlay.dcm",
    "reportsi.dcm",
    "waveform_ecg.dcm",
    "liver_1frame.dcm",
    "JPEG2000.dcm",
]
_UID = re.compile(r"\d+(?:\.\d+)+|(?<=UID )\S+")


def _dciodvfy_errors(path: Path) -> set[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    # UIDs change by design; compare messages without them.
    return {_UID.sub("<uid>", line.strip()) for line in lines if line.startswith("Error")}


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy is not installed")
@pytest.mark.parametrize("name", DCIODVFY_FILES)
def test_dciodvfy_reports_no_new_error(name, tmp_path):
    source = Path(DATA_ROOT) / "test_files" / name
    back, out = _roundtrip(source, ProfileOptions())
    target = tmp_path / name
    target.write_bytes(out)
    new = _dciodvfy_errors(target) - _dciodvfy_errors(source)
    assert new == set()


def test_undecodable_value_is_rejected_with_a_clear_error():
    from pydicom.dataelem import RawDataElement

    from deid.errors import InputError

    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    # Three bytes cannot hold a sequence item, nor a 2-byte US value.
    ds._dict[0x00081140] = RawDataElement(0x00081140, "SQ", 3, b"\x01\x02\x03", 0, False, True)
    with pytest.raises(InputError, match=r"\(0008,1140\) cannot be decoded"):
        deidentify(ds, ProfileOptions(), KEY)
    del ds._dict[0x00081140]
    ds._dict[0x00101030] = RawDataElement(0x00101030, "US", 3, b"\x01\x02\x03", 0, False, True)
    with pytest.raises(InputError, match=r"\(0010,1030\) cannot be decoded"):
        deidentify(ds, ProfileOptions(retain_patient_chars=True), KEY)
