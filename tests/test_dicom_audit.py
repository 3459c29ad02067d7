"""Metadata audit: profile attributes present, private tags, flags, PHI-looking path tokens."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.sequence import Sequence

from deid.dicom.audit import audit_dataset, audit_path_tokens
from deid.dicom.options import ProfileOptions
from deid.dicom.profile import deidentify


def _hand_made() -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.PatientName = "Doe^Jane"  # Z
    ds.PatientID = "12345"  # Z/D
    ds.StudyDate = "20200101"  # Z
    ds.AccessionNumber = ""  # Z, but empty: not counted
    ds.SOPInstanceUID = "1.2.3.4"  # U
    ds.InstitutionName = "General Hospital"  # X/Z/D
    ds.Modality = "CT"  # not in the table
    ds.BurnedInAnnotation = "NO"
    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.5"  # U, nested
    item.add_new(0x00290010, "LO", "ACME")
    item.add_new(0x00291001, "LO", "secret")
    ds.ReferencedImageSequence = Sequence([item])  # X/Z/U*
    ds.add_new(0x00090010, "LO", "OTHER")
    ds.add_new(0x00091001, "LO", "x")
    ds.add_new(0x00091002, "LO", "y")
    return ds


def test_audit_counts_on_a_hand_made_dataset():
    findings = audit_dataset(_hand_made())
    assert findings.action_counts == {"U": 2, "X/Z/D": 1, "X/Z/U*": 1, "Z": 2, "Z/D": 1}
    assert findings.identifying_count == 7
    assert findings.private_tag_count == 3
    assert findings.private_creators == ["ACME", "OTHER"]
    assert findings.burned_in_annotation == "NO"
    assert findings.patient_identity_removed is None
    assert findings.burned_in_risk is None
    names = [name for _, name, _ in findings.attributes]
    assert "Referenced SOP Instance UID" in names and "Patient's Name" in names
    as_json = findings.to_dict()
    assert "Doe" not in str(as_json) and "General Hospital" not in str(as_json)


def test_audit_after_deidentification():
    ds = _hand_made()
    deidentify(ds, ProfileOptions(), b"\x03" * 32)
    findings = audit_dataset(ds)
    assert findings.patient_identity_removed == "YES"
    assert findings.private_tag_count == 0 and findings.private_creators == []
    # What remains: pseudonyms (D) and remapped UIDs (U), no removed attribute.
    assert set(findings.action_counts) <= {"U", "Z", "Z/D", "X/Z/U*"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("patients/John_Smith/2021-03-04/CT_Head_001.dcm", ["date:2021-03-04", "name:John_Smith"]),
        ("SMITH^JOHN/1234567.dcm", ["mrn:1234567", "name:SMITH^JOHN"]),
        ("x/jane.doe@example.org_scan.png", ["email:jane.doe@example.org"]),
        ("calls/555-123-4567/b.dcm", ["phone:555-123-4567"]),
        ("20200131_chest.png", ["date:20200131"]),
        ("1.2.840.113619.2.55.3.604688.dcm", ["uid:1.2.840.113619.2.55.3.604688"]),
        ("MR_small.dcm", []),
        ("series_12/IMG0001.dcm", []),
        ("CT_Chest_Axial/IM_0001.dcm", []),
    ],
)
def test_path_tokens(path, expected):
    assert audit_path_tokens(path) == expected


def test_raster_metadata_audit(tmp_path):
    import numpy as np
    from PIL import Image, PngImagePlugin

    from deid.dicom.raster_audit import audit_raster_metadata
    from deid.errors import UnreadableFileError

    image = Image.fromarray(np.zeros((8, 8), np.uint8))
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("PatientName", "Doe^Jane")
    image.save(tmp_path / "tagged.png", pnginfo=chunks)
    image.save(tmp_path / "plain.png")
    exif = Image.Exif()
    exif[0x013B] = "Dr Who"  # Artist
    exif[0x0112] = 1  # Orientation: not identifying
    image.save(tmp_path / "tagged.jpg", exif=exif, comment=b"ACC123")

    png = audit_raster_metadata(tmp_path / "tagged.png")
    assert png.format == "PNG" and png.text_keys == ["PatientName"] and png.has_phi_risk
    assert "Doe" not in str(png.to_dict())
    assert not audit_raster_metadata(tmp_path / "plain.png").has_phi_risk
    jpeg = audit_raster_metadata(tmp_path / "tagged.jpg")
    assert jpeg.exif_tags == ["Artist", "Orientation"] and jpeg.identifying_exif == ["Artist"]
    assert jpeg.text_keys == ["comment"]
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(UnreadableFileError, match="not a readable image"):
        audit_raster_metadata(tmp_path / "junk.png")
