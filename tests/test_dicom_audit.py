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
