"""Which DICOM files may carry identifying text burned into their pixels.

Metadata de-identification cannot see text in pixels, so such files are held back
(quarantined) unless the user confirms the pixels were checked or cleaned.
"""

from __future__ import annotations

import pydicom

from deid.dicom.iod_types import SC, US

# Modalities whose images habitually carry burned-in annotation (ultrasound, secondary
# capture, document/other).
_RISKY_MODALITIES = {
    "US": "ultrasound",
    "SC": "secondary capture",
    "OT": "other",
    "DOC": "document",
}


# Everything needs_quarantine reads: a header read can be limited to these.
QUARANTINE_KEYWORDS = ("BurnedInAnnotation", "SOPClassUID", "ConversionType", "Modality")


def needs_quarantine(ds: pydicom.Dataset) -> str | None:
    """Reason why ``ds`` may carry burned-in text, or None.

    A file is flagged when Burned In Annotation (0028,0301) is YES, when its SOP class is a
    secondary capture or ultrasound class, when it has a Conversion Type (secondary capture),
    or when its Modality is US, SC, OT or DOC. An explicit Burned In Annotation of NO does not
    clear a risky kind: such values are often set by default by the producing device.
    """
    burned = str(ds.get("BurnedInAnnotation", "")).strip().upper()
    if burned == "YES":
        return "Burned In Annotation is YES: the pixels carry identifying text"
    sop_class = str(ds.get("SOPClassUID", "")).strip()
    if sop_class in SC or "ConversionType" in ds:
        return "secondary capture images commonly carry burned-in text"
    if sop_class in US:
        return "ultrasound images commonly carry burned-in text"
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality in _RISKY_MODALITIES:
        return f"{_RISKY_MODALITIES[modality]} images (Modality {modality}) commonly carry burned-in text"
    return None
