"""Attribute types (1, 2, 3) in common IODs, used to resolve X/Z, X/D, Z/D and X/Z/D actions.

Only the attributes whose Basic Profile action depends on the type are listed, for the IODs a
medical-imaging release mostly holds (CR, DX, CT, MR, ophthalmic photography, secondary
capture, ultrasound, radiotherapy, structured reports, waveforms, and the multi-frame
functional group IODs). Types follow the modules of PS3.3 (General Study, General Series, General Equipment, General Image, SOP Common, Patient,
Contrast/Bolus, Acquisition Context, Ophthalmic Photography Image); a conditional type
("2C") counts as its base type.

Resolution rule (:func:`resolve`): Type 1 -> D (a value is required), Type 2 -> Z (present,
may be empty), Type 3 or unknown -> X. When the preferred action is not among the row's
choices, a required attribute stays present (Z for D, D for Z) and an optional one takes the
emptiest choice offered (Z, then D). Removing an attribute whose type is unknown is the conservative privacy choice; it may make an exotic IOD invalid,
never leak.
"""

from __future__ import annotations

CR = ("1.2.840.10008.5.1.4.1.1.1",)
DX = tuple(f"1.2.840.10008.5.1.4.1.1.1.{s}" for s in ("1", "1.1", "2", "2.1", "3", "3.1"))
CT = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2")
MR = ("1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.4")
OP = ("1.2.840.10008.5.1.4.1.1.77.1.5.1", "1.2.840.10008.5.1.4.1.1.77.1.5.2")
SC = ("1.2.840.10008.5.1.4.1.1.7",) + tuple(f"1.2.840.10008.5.1.4.1.1.7.{i}" for i in range(1, 5))
US = ("1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.6.2")
RT_PLAN = ("1.2.840.10008.5.1.4.1.1.481.5", "1.2.840.10008.5.1.4.1.1.481.8")
RT_OTHER = tuple(f"1.2.840.10008.5.1.4.1.1.481.{i}" for i in (1, 2, 3, 4, 6, 7))

# Types shared by every IOD above (Patient, General Study/Series/Equipment/Image, SOP Common).
_COMMON: dict[int, int] = {
    0x00100020: 2,  # Patient ID
    0x00080020: 2,  # Study Date
    0x00080030: 2,  # Study Time
    0x00080021: 3,  # Series Date
    0x00080031: 3,  # Series Time
    0x00080022: 3,  # Acquisition Date
    0x00080032: 3,  # Acquisition Time
    0x0008002A: 3,  # Acquisition DateTime
    0x00080023: 2,  # Content Date (2C)
    0x00080033: 2,  # Content Time (2C)
    0x00080012: 3,  # Instance Creation Date
    0x00080013: 3,  # Instance Creation Time
    0x00080080: 3,  # Institution Name
    0x00080082: 3,  # Institution Code Sequence
    0x00081010: 3,  # Station Name
    0x00181000: 3,  # Device Serial Number
    0x00081070: 3,  # Operators' Name
    0x00081072: 3,  # Operator Identification Sequence
    0x00181030: 3,  # Protocol Name
    0x00081110: 3,  # Referenced Study Sequence
    0x00081111: 3,  # Referenced Performed Procedure Step Sequence
    0x00081140: 3,  # Referenced Image Sequence
    0x00082112: 3,  # Source Image Sequence
    0x00321060: 3,  # Requested Procedure Description
    0x00102203: 2,  # Patient's Sex Neutered (2C, animals)
    0x00180010: 2,  # Contrast/Bolus Agent (Contrast/Bolus module)
    0x00181400: 3,  # Acquisition Device Processing Description
    0x0018700A: 3,  # Detector ID
    0x0018700C: 3,  # Date of Last Detector Calibration
    0x0018700E: 3,  # Time of Last Detector Calibration
}

_OVERRIDES: dict[tuple[str, ...], dict[int, int]] = {
    # Ophthalmic Photography Image module: acquisition and content time stamps are required.
    OP: {0x0008002A: 1, 0x00080023: 1, 0x00080033: 1, 0x00400555: 2},
    # RT Series: Operators' Name is Type 2; RT General Plan: plan date and time; RT Beams:
    # Treatment Machine Name (inside the Beam Sequence).
    RT_OTHER: {0x00081070: 2},
    RT_PLAN: {0x00081070: 2, 0x300A0006: 2, 0x300A0007: 2, 0x300A00B2: 2},
}

TYPES: dict[str, dict[int, int]] = {}
for _group in (CR, DX, CT, MR, OP, SC, US, RT_PLAN, RT_OTHER):
    for _uid in _group:
        TYPES[_uid] = {**_COMMON, **_OVERRIDES.get(_group, {})}

# IOD families recognised by SOP class prefix: structured reports (SR Document General module:
# content date/time required; SR Document Series: Referenced PPS Sequence Type 2) and
# waveforms (Waveform Identification module, Acquisition Context module).
_FAMILIES: tuple[tuple[str, dict[int, int]], ...] = (
    ("1.2.840.10008.5.1.4.1.1.88.", {**_COMMON, 0x00080023: 1, 0x00080033: 1, 0x00081111: 2}),
    (
        "1.2.840.10008.5.1.4.1.1.9.",
        {**_COMMON, 0x00080023: 1, 0x00080033: 1, 0x0008002A: 1, 0x00400555: 2},
    ),
)

# Multi-frame functional group IODs (enhanced CT/MR, segmentation, ...), recognised by SOP
# class (ENHANCED) or by their Shared Functional Groups Sequence: Multi-frame Functional Groups module (content date/time),
# Enhanced General Equipment module (serial number), acquisition date-time and context.
ENHANCED = tuple(
    f"1.2.840.10008.5.1.4.1.1.{s}"
    for s in (
        "2.1",
        "2.2",
        "4.1",
        "4.2",
        "4.3",
        "4.4",
        "6.2",
        "12.1.1",
        "12.2.1",
        "13.1.3",
        "66.4",
        "77.1.5.4",
        "128.1",
        "130",
    )
)
MULTI_FRAME: dict[int, int] = {
    0x00080023: 1,
    0x00080033: 1,
    0x00181000: 1,
    0x0008002A: 1,
    0x00400555: 2,
}

_PREFERENCE = {1: "D", 2: "Z", 3: "X"}
# When the preferred action is not offered: a required attribute stays present (Z <-> D), an
# optional one becomes as empty as the row allows.
_FALLBACK = {"D": ("Z",), "Z": ("D",), "X": ("Z", "D")}


def attribute_type(sop_class_uid: str, tag: int, multi_frame: bool = False) -> int | None:
    """Type (1, 2 or 3) of ``tag`` in the IOD of ``sop_class_uid``; None when unknown.

    ``multi_frame`` marks a dataset with a Shared Functional Groups Sequence, whose modules
    make some attributes required whatever the SOP class.
    """
    uid = sop_class_uid.strip()
    table = TYPES.get(uid)
    if table is None:
        table = next((t for prefix, t in _FAMILIES if uid.startswith(prefix)), {})
    if (multi_frame or uid in ENHANCED) and tag in MULTI_FRAME:
        return MULTI_FRAME[tag]
    return table.get(tag)


def resolve(choice: str, sop_class_uid: str, tag: int, multi_frame: bool = False) -> str:
    """Resolve a compound action ("X/Z", "X/D", "Z/D", "X/Z/D") to X, Z or D for this IOD.

    A single action is returned unchanged. "X/Z/U*" is handled by the caller (UID sequences).
    """
    options = choice.split("/")
    if len(options) == 1:
        return choice
    kind = attribute_type(sop_class_uid, tag, multi_frame)
    preferred = _PREFERENCE[kind] if kind is not None else "X"
    if preferred in options:
        return preferred
    return next(a for a in _FALLBACK[preferred] if a in options)
