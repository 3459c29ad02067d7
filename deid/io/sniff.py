"""Recognise image files by their first bytes, never by their extension."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

from deid.io.record import Kind

# Two-letter value representations; an explicit-VR DICOM element has one right after its tag.
_DICOM_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV PN SH SL SQ SS ST SV TM UC UI UL UN UR "
    b"US UT UV".split()
)
_NIFTI1_MAGICS = (b"n+1\x00", b"ni1\x00")
_NIFTI2_MAGICS = (b"n+2\x00", b"ni2\x00")
_HEAD = 548  # enough for the DICOM preamble and for a NIfTI-2 header


def _looks_like_bare_dicom(head: bytes, size: int) -> bool:
    """A DICOM data set without the 128-byte preamble starts with a group 0002 or 0008 element."""
    if len(head) < 8:
        return False
    for order in ("<", ">"):
        group, _ = struct.unpack(f"{order}HH", head[:4])
        if group not in (0x0002, 0x0008):
            continue
        if head[4:6] in _DICOM_VRS:
            return True
        (length,) = struct.unpack(f"{order}I", head[4:8])  # implicit VR: 4-byte length
        if length == 0xFFFFFFFF or 8 + length <= size:
            return True
    return False


def _nifti_header(head: bytes) -> bool:
    if len(head) >= 348:
        for order in ("<", ">"):
            if struct.unpack(f"{order}i", head[:4])[0] == 348 and head[344:348] in _NIFTI1_MAGICS:
                return True
    if len(head) >= 12:
        for order in ("<", ">"):
            if struct.unpack(f"{order}i", head[:4])[0] == 540 and head[4:8] in _NIFTI2_MAGICS:
                return True
    return False


def sniff(path: str | os.PathLike[str]) -> Kind | None:
    """Tell an image file's format from its content.

    Parameters
    ----------
    path
        File to inspect; opened read-only, at most a few hundred bytes are read.

    Returns
    -------
    ``"dicom"``, ``"png"``, ``"jpeg"``, ``"tiff"``, ``"nifti"`` (also gzip-compressed), or
    ``None`` when the content is none of these.

    Raises
    ------
    OSError
        If the file cannot be opened or read (for example, permission denied).
    """
    with open(path, "rb") as handle:
        head = handle.read(_HEAD)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if _nifti_header(head):
        return "nifti"
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as handle:
                inner = handle.read(_HEAD)
        except (OSError, EOFError, zlib.error):
            return None
        return "nifti" if _nifti_header(inner) else None
    if _looks_like_bare_dicom(head, Path(path).stat().st_size):
        return "dicom"
    return None
