from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from test_synth_fixtures import phantom

from deid.errors import InputError
from deid.synth import dicom_bytes, dicom_for, phi_for, uids_for
from deid.synth.burn_in import burned_pixels
from deid.synth.dicom_common import PRIVATE_CREATOR
from deid.synth.uids import ImageUIDs
from reid_model.phantoms.types import DATASETS

SOP_CLASS = {
    "cxr_site_a": "1.2.840.10008.5.1.4.1.1.1",
    "cxr_site_b": "1.2.840.10008.5.1.4.1.1.1.1",
    "chest_ct": "1.2.840.10008.5.1.4.1.1.2",
    "brain_mri": "1.2.840.10008.5.1.4.1.1.4",
    "fundus": "1.2.840.10008.5.1.4.1.1.77.1.5.1",
}


def _round_trip(image, seed: int = 0) -> list[pydicom.Dataset]:
    datasets = dicom_for(image, phi_for(image, seed), uids_for(image, seed))
    return [pydicom.dcmread(io.BytesIO(dicom_bytes(ds))) for ds in datasets]


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_reads_back_with_sop_class_modality_pixels_and_phi(dataset: str) -> None:
    image = phantom(dataset)
    files = _round_trip(image)
    phi = phi_for(image, 0)
    assert len(files) == (image.pixels.shape[0] if image.is_volume else 1)
    planes = image.pixels if image.is_volume else [image.pixels]
    for ds, plane in zip(files, planes, strict=True):
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == SOP_CLASS[dataset]
        assert ds.Modality == DATASETS[dataset]
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert str(ds.PatientName) == phi.patient.name.dicom
        assert ds.PatientID == phi.patient.patient_id
        assert ds.StudyDate == phi.study_datetime.strftime("%Y%m%d")
        assert ds.BurnedInAnnotation == "NO"
        assert (ds.Rows, ds.Columns) == plane.shape[:2]
        np.testing.assert_array_equal(apply_modality_lut(ds.pixel_array, ds), plane)
    if dataset == "fundus":
        assert files[0].PhotometricInterpretation == "RGB"
        assert files[0].PlanarConfiguration == 0
        assert files[0].ImageLaterality == "L"


@pytest.mark.parametrize(("dataset", "step"), [("chest_ct", -2.5), ("brain_mri", 5.0)])
def test_volume_slices_share_series_and_follow_z(dataset: str, step: float) -> None:
    positions = tuple(12.0 + step * i for i in range(4))
    image = dataclasses.replace(
        phantom(dataset, slices=4), slice_positions_mm=positions, slice_thickness_mm=abs(step)
    )
    files = _round_trip(image)
    assert len({ds.SeriesInstanceUID for ds in files}) == 1
    assert len({ds.StudyInstanceUID for ds in files}) == 1
    assert len({ds.FrameOfReferenceUID for ds in files}) == 1
    assert len({ds.SOPInstanceUID for ds in files}) == 4
    assert [ds.InstanceNumber for ds in files] == [1, 2, 3, 4]
    # ImagePositionPatient moves monotonically along z, in the generator's slice order
    z = [float(ds.ImagePositionPatient[2]) for ds in files]
    assert z == list(positions)
    assert all(float(ds.SliceThickness) == abs(step) for ds in files)
    assert {tuple(ds.ImagePositionPatient[:2]) for ds in files} == {
        tuple(files[0].ImagePositionPatient[:2])
    }


def test_ct_stores_hounsfield_units_signed() -> None:
    image = phantom("chest_ct")
    ds = _round_trip(image)[0]
    assert ds.PixelRepresentation == 1 and ds.RescaleType == "HU"
    assert apply_modality_lut(ds.pixel_array, ds).min() == image.pixels[0].min() < 0


def test_visits_share_patient_but_not_study() -> None:
    first, second = (
        _round_trip(phantom("cxr_site_b", 2, 0))[0],
        _round_trip(phantom("cxr_site_b", 2, 1))[0],
    )
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
        assert first[keyword].value == second[keyword].value
    assert first.StudyInstanceUID != second.StudyInstanceUID
    assert first.AccessionNumber != second.AccessionNumber
    assert first.StudyDate < second.StudyDate


def test_private_block_carries_phi() -> None:
    image = phantom("brain_mri")
    ds = _round_trip(image)[0]
    block = ds.private_block(0x0009, PRIVATE_CREATOR)
    phi = phi_for(image, 0)
    assert str(block[0x01].value) == phi.patient.name.dicom
    assert block[0x02].value == phi.patient.patient_id
    assert phi.patient.name.display in block[0x05].value


@pytest.mark.parametrize("dataset", ["cxr_site_a", "chest_ct", "fundus"])
def test_burned_in_text_changes_pixels_and_sets_flag(dataset: str) -> None:
    image = phantom(dataset, burn=True, size=96)
    files = _round_trip(image)
    assert {ds.BurnedInAnnotation for ds in files} == {"YES"}
    stored = np.stack([apply_modality_lut(ds.pixel_array, ds) for ds in files])
    original = image.pixels if image.is_volume else image.pixels[None]
    changed = stored != original
    if dataset == "fundus":
        changed = changed.any(axis=-1)
    assert changed[0].sum() > 50
    # every slice carries the text, drawn at the top of the intensity range
    assert all(np.array_equal(changed[0], c) for c in changed)
    top = 255 if dataset == "fundus" else original.max()
    assert np.all(stored[changed] == top)
    # in the top-left corner; the rest of the image is untouched
    rows, cols = np.nonzero(changed[0])
    assert rows.max() < 96 // 2 and cols.min() < 96 // 4
    assert not changed[:, 96 // 2 :].any()


def test_flag_is_no_and_pixels_untouched_without_burn_in() -> None:
    image = phantom("cxr_site_a", burn=False)
    assert burned_pixels(image, phi_for(image, 0)) is image.pixels


def test_rejects_uids_that_do_not_match_the_slices() -> None:
    image = phantom("chest_ct", slices=3)
    uids = uids_for(image, 0)
    short = ImageUIDs(uids.study, uids.series, uids.frame_of_reference, uids.sop_instances[:2])
    with pytest.raises(InputError, match="3 files but 2 SOP instance UIDs"):
        dicom_for(image, phi_for(image, 0), short)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy is not installed")
@pytest.mark.parametrize("burn", [False, True])
def test_dciodvfy_reports_no_errors(tmp_path: Path, burn: bool) -> None:
    for dataset in DATASETS:
        image = phantom(dataset, 1, 1, burn=burn, slices=2)
        for index, ds in enumerate(dicom_for(image, phi_for(image, 5), uids_for(image, 5))):
            path = tmp_path / f"{dataset}-{index}.dcm"
            path.write_bytes(dicom_bytes(ds))
            result = subprocess.run(
                ["dciodvfy", str(path)], capture_output=True, text=True, timeout=60
            )
            report = result.stdout + result.stderr
            errors = [line for line in report.splitlines() if line.startswith("Error")]
            assert errors == [], f"{dataset} slice {index}:\n{report}"
            assert result.returncode == 0, report


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pixels": np.zeros((4, 4), np.int16)}, "must be 2-D uint16"),
        ({"pixels": np.full((4, 4), 5000, np.uint16)}, "does not fit bits_stored=12"),
        ({"slice_positions_mm": (1.0, 2.0)}, "one z per slice"),
    ],
)
def test_rejects_images_that_break_their_layout(change: dict, message: str) -> None:
    image = dataclasses.replace(phantom("cxr_site_a"), **change)
    with pytest.raises(InputError, match=message):
        dicom_for(image, phi_for(image, 0), uids_for(image, 0))
