"""Empty and dummy values per value representation, as the Z and D actions write them."""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from pydicom.valuerep import PersonName

from deid.dicom.dates import DUMMY_DATE, DUMMY_DATETIME, DUMMY_TIME

DUMMY_TEXT = "ANONYMIZED"
TEXT_VRS = frozenset({"AE", "CS", "LO", "SH", "ST", "LT", "UT", "UC"})
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "IS", "DS"})
_DUMMIES: dict[str, Any] = {
    "DA": DUMMY_DATE,
    "TM": DUMMY_TIME,
    "DT": DUMMY_DATETIME,
    "PN": "ANONYMIZED",
    "AS": "000Y",
    "UR": "",
}


def set_empty(elem: DataElement) -> None:
    """Z: give ``elem`` a zero-length value (an empty sequence for SQ)."""
    elem.value = Sequence() if elem.VR == "SQ" else None


def set_dummy(elem: DataElement) -> bool:
    """D for VRs with a meaningful dummy; returns False when there is none (caller uses Z).

    UIDs, patient identifiers and sequences have their own handling in the profile.
    """
    vr = elem.VR
    if vr in _DUMMIES:
        elem.value = _DUMMIES[vr]
    elif vr in TEXT_VRS:
        elem.value = DUMMY_TEXT
    elif vr in _NUMBER_VRS:
        elem.value = "0" if vr in ("IS", "DS") else 0
    else:
        return False
    return True


def has_value(elem: DataElement) -> bool:
    """Whether ``elem`` holds a non-empty value."""
    value = elem.value
    if value is None:
        return False
    if isinstance(value, str | PersonName):
        return bool(str(value).strip(" \x00"))
    if hasattr(value, "__len__"):
        return len(value) > 0
    return True
