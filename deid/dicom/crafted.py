"""A crafted test corpus: datasets in which every settable attribute of PS3.15 Table E.1-1 holds
a unique, searchable value, at the top level and inside a sequence, plus private attributes,
a curve and an overlay.

It exists to check a de-identifier: after de-identification, none of the unique values of a
removed or replaced attribute may appear anywhere in the written bytes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from deid.dicom.profile_row import ProfileRow
from deid.dicom.table import EXACT, PRIVATE_ROW, REPEATING

_REPEATING_BY_NAME = {r.name: r for r in REPEATING}

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
# Command group (0000) attributes belong to network messages, not files.
_UNSETTABLE_GROUPS = (0x0000,)
# Attributes set by the corpus structure itself (identity and references).
_STRUCTURAL = (
    0x00080016,  # SOP Class UID
    0x00080018,  # SOP Instance UID
    0x0020000D,  # Study Instance UID
    0x0020000E,  # Series Instance UID
    0x00100020,  # Patient ID
    0x00100010,  # Patient's Name
    0x00081140,  # Referenced Image Sequence
    0x00082112,  # Source Image Sequence
)


@dataclass(frozen=True)
class Planted:
    """One unique value planted in a crafted dataset."""

    token: str
    tag: int
    row: ProfileRow
    nested: bool
    vr: str


def _unique_value(vr: str, n: int) -> tuple[object, str | None]:
    """A value for VR ``vr`` that is unique for ``n``; also its searchable text (None if the
    value has no distinctive byte form, e.g. small binary numbers)."""
    if vr in ("LO", "SH", "ST", "LT", "UT", "UC", "CS", "AE"):
        token = f"QV{n:05d}Z"
        return token, token
    if vr == "PN":
        token = f"Fam{n:05d}^Giv{n:05d}"
        return token, f"Fam{n:05d}"
    if vr == "UI":
        token = f"1.2.826.0.1.{900000 + n}"
        return token, token
    if vr == "DA":
        token = (dt.date(1931, 1, 1) + dt.timedelta(days=37 * n)).strftime("%Y%m%d")
        return token, token
    if vr == "TM":
        token = f"{n % 24:02d}{(n // 24) % 60:02d}{(n * 7) % 60:02d}.{n:06d}"
        return token, f".{n:06d}"
    if vr == "DT":
        day = (dt.date(1931, 1, 2) + dt.timedelta(days=37 * n)).strftime("%Y%m%d")
        token = f"{day}101010.{n:06d}"
        return token, token
    if vr == "DS":
        token = f"8{n:05d}.5"
        return token, token
    if vr == "IS":
        token = f"7{n:06d}"
        return token, token
    if vr == "AS":
        return f"{n % 1000:03d}Y", None
    if vr == "UR":
        token = f"http://example.org/qv{n:05d}"
        return token, token
    if vr in ("OB", "UN", "OW"):
        token = f"BQ{n:05d}XY"
        return token.encode("ascii"), token
    if vr in ("US", "SS", "UL", "SL"):
        return n % 60000 + 1, None
    if vr in ("FL", "FD"):
        return float(n) + 0.25, None
    raise ValueError(f"no crafted value for VR {vr}")


def crafted_dataset(
    patient: str = "0001", instance: int = 1, referenced_sop_uid: str | None = None
) -> tuple[pydicom.Dataset, list[Planted]]:
    """Build one crafted CT dataset.

    Parameters
    ----------
    patient : str
        Patient number; Patient ID is "MRN<patient>" and Patient's Name is derived from it.
    instance : int
        Distinguishes instances (and makes every planted value unique across them); 1 to 6,
        so that planted dates stay within the years DICOM dates can hold.
    referenced_sop_uid : str | None
        SOP Instance UID of another crafted file for the reference sequences to point at.

    Returns
    -------
    tuple[pydicom.Dataset, list[Planted]]
        The dataset (with file meta) and the planted values with their rows.
    """
    if not 1 <= instance <= 6:
        raise ValueError(f"instance must be 1 to 6, got {instance}")
    ds = pydicom.Dataset()
    planted: list[Planted] = []
    base = instance * 10000

    def plant(target: pydicom.Dataset, tag: int, row: ProfileRow, n: int, nested: bool) -> None:
        vr = dictionary_VR(tag).split(" or ")[0]
        if vr == "SQ":
            return
        value, token = _unique_value(vr, n)
        target.add_new(tag, vr, value)
        if token is not None:
            planted.append(Planted(token, tag, row, nested, vr))

    settable = [
        (tag, row)
        for tag, row in sorted(EXACT.items())
        if tag >> 16 not in _UNSETTABLE_GROUPS and tag >> 16 != 0x0002 and tag not in _STRUCTURAL
    ]
    leaves = [(tag, row) for tag, row in settable if dictionary_VR(tag) != "SQ"]
    for n, (tag, row) in enumerate(settable):
        if dictionary_VR(tag) != "SQ":
            plant(ds, tag, row, base + n, nested=False)
            continue
        # Each sequence item carries another profile attribute (a different one per sequence),
        # a person name and a private tag; the first sequence nests a second level.
        item = pydicom.Dataset()
        leaf_tag, leaf_row = leaves[(7 * n) % len(leaves)]
        plant(item, leaf_tag, leaf_row, base + 5000 + n, nested=True)
        plant(item, 0x0040A123, EXACT[0x0040A123], base + 7000 + n, nested=True)
        item.add_new(0x00290010, "LO", "QCREATOR")
        item.add_new(0x00291001, "LO", f"QP{base + 5000 + n:05d}N")
        planted.append(Planted(f"QP{base + 5000 + n:05d}N", 0x00291001, PRIVATE_ROW, True, "LO"))
        if n == next(i for i, (t, _) in enumerate(settable) if dictionary_VR(t) == "SQ"):
            inner = pydicom.Dataset()
            plant(inner, 0x00100030, EXACT[0x00100030], base + 9000, nested=True)  # birth date
            item.add_new(0x0040A730, "SQ", Sequence([inner]))  # Content Sequence
        ds.add_new(tag, "SQ", Sequence([item]))

    uid_root = f"1.2.826.0.1.{800000 + instance}"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = f"{uid_root}.1"
    ds.StudyInstanceUID = f"1.2.826.0.1.7{patient}.1"
    ds.SeriesInstanceUID = f"1.2.826.0.1.7{patient}.2"
    ds.PatientID = f"MRN{patient}"
    ds.PatientName = f"Doe{patient}^Jane"
    for keyword in ("ReferencedImageSequence", "SourceImageSequence"):
        ref = pydicom.Dataset()
        ref.ReferencedSOPClassUID = CT_IMAGE_STORAGE
        ref.ReferencedSOPInstanceUID = referenced_sop_uid or f"{uid_root}.9"
        setattr(ds, keyword, Sequence([ref]))

    ds.add_new(0x00090010, "LO", "QCREATOR")
    ds.add_new(0x00091001, "LO", f"QP{base:05d}T")
    ds.add_new(0x00091002, "OB", f"QB{base:05d}T".encode())
    planted += [
        Planted(f"QP{base:05d}T", 0x00091001, PRIVATE_ROW, False, "LO"),
        Planted(f"QB{base:05d}T", 0x00091002, PRIVATE_ROW, False, "OB"),
    ]
    _add_graphics(ds, base, planted)
    _add_image(ds)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds, planted


def _add_graphics(ds: pydicom.Dataset, base: int, planted: list[Planted]) -> None:
    """A curve and an overlay, each with a searchable value."""
    curve_row, overlay_row, comment_row = (
        _REPEATING_BY_NAME[name] for name in ("Curve Data", "Overlay Data", "Overlay Comments")
    )
    ds.add_new(0x50003000, "OB", f"QC{base:05d}V".encode())
    planted.append(Planted(f"QC{base:05d}V", 0x50003000, curve_row, False, "OB"))
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", f"QO{base:05d}V".encode())
    ds.add_new(0x60004000, "LT", f"QM{base:05d}V")
    planted.append(Planted(f"QO{base:05d}V", 0x60003000, overlay_row, False, "OW"))
    planted.append(Planted(f"QM{base:05d}V", 0x60004000, comment_row, False, "LT"))


def _add_image(ds: pydicom.Dataset) -> None:
    """An 8x8 16-bit monochrome image with a fixed ramp."""
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.arange(64, dtype="<u2").tobytes()
