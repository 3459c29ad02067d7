"""Strip the free-text fields and extensions of a single-file NIfTI-1/2 volume.

``descrip``, ``aux_file``, ``intent_name`` and ``db_name`` are emptied, and every header
extension (which can hold a whole DICOM header, or AFNI/XML notes) is dropped; the voxel bytes are
copied unchanged behind the new, shorter header. Gzip output is written without a file name or
time stamp, so it is deterministic.
"""

from __future__ import annotations

import gzip
import io
import struct

import nibabel as nib

from deid.errors import UnreadableFileError

TEXT_FIELDS = ("descrip", "aux_file", "intent_name", "db_name")
_HEADERS = {348: nib.Nifti1Header, 540: nib.Nifti2Header}


def is_gzip(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b"


def strip_nifti(data: bytes, name: str = "") -> tuple[bytes, int]:
    """Return ``data`` without header text and extensions, and how many were removed.

    Raises
    ------
    UnreadableFileError
        If the header cannot be parsed, or the file is a ``.hdr``/``.img`` pair.
    """
    raw = gzip.decompress(data) if is_gzip(data) else data
    try:
        size = next(
            s for s in _HEADERS for order in "<>" if struct.unpack(order + "i", raw[:4])[0] == s
        )
        header = _HEADERS[size].from_fileobj(io.BytesIO(raw), check=False)
        single = header["magic"].item() in (b"n+1", b"n+2")
    except (StopIteration, struct.error, ValueError, KeyError) as exc:
        raise UnreadableFileError(name, f"NIfTI header could not be parsed ({exc})") from exc
    if not single:
        raise UnreadableFileError(
            name, "NIfTI .hdr/.img pairs are not copied; convert the pair to a single .nii file"
        )
    offset = int(header["vox_offset"])
    removed = len(header.extensions)
    for field in TEXT_FIELDS:
        if field in header and header[field].item():
            header[field] = b""
            removed += 1
    header.extensions.clear()
    new_offset = size + 4  # the 4-byte extension flag follows the header; voxels follow it
    header["vox_offset"] = new_offset
    clean = header.binaryblock + b"\x00" * 4 + raw[offset:]
    return (gzip.compress(clean, mtime=0) if is_gzip(data) else clean), removed
