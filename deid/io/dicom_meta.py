"""Small, JSON-able summaries of DICOM headers, and enhanced multi-frame attribute lookup."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import IS, DSfloat, PersonName

# Header attributes a Record carries: identifiers the audit and the risk report need, and the
# acquisition facts the re-identifier's preprocessing may use. Everything else stays in the file.
SUMMARY_KEYWORDS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "StudyDate",
    "AccessionNumber",
    "Modality",
    "BodyPartExamined",
    "ViewPosition",
    "Laterality",
    "ImageLaterality",
    "Manufacturer",
    "ManufacturerModelName",
    "InstitutionName",
    "BurnedInAnnotation",
    "LossyImageCompression",
    "PixelSpacing",
    "SliceThickness",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "NumberOfFrames",
)


def json_value(value: Any) -> Any:
    """Convert a pydicom element value to plain JSON types (str, int, float, list, None)."""
    if isinstance(value, (MultiValue, list, tuple)):
        return [json_value(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (IS, int)):
        return int(value)
    if isinstance(value, (DSfloat, float)):
        return float(value)
    if isinstance(value, (PersonName, UID, str)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("latin-1", errors="replace").strip("\x00 ")
    return str(value)


def frame_element(ds: Dataset, sequence: str, index: int) -> Dataset | None:
    """First item of a functional-group ``sequence`` for frame ``index`` of an enhanced object.

    Per-frame groups win over shared ones, as PS3.3 C.7.6.16 specifies. ``None`` when absent.
    """
    groups = ds.get("PerFrameFunctionalGroupsSequence")
    if groups is not None and index < len(groups):
        item = groups[index].get(sequence)
        if item:
            return item[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        item = shared[0].get(sequence)
        if item:
            return item[0]
    return None


def dicom_metadata(ds: Dataset) -> dict[str, Any]:
    """Summary of ``ds`` as a JSON-able dict: the SUMMARY_KEYWORDS present plus the syntax."""
    summary: dict[str, Any] = {}
    for keyword in SUMMARY_KEYWORDS:
        try:
            value = ds.get(keyword)
        except (ValueError, TypeError):  # a malformed value is left out, not fatal
            continue
        if value is not None and value != "":
            summary[keyword] = json_value(value)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is not None:
        summary["TransferSyntaxUID"] = str(syntax)
    return summary
