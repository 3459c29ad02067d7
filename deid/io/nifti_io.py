"""NIfTI-1/2 volumes (nibabel), read into and written back from the Record (S, H, W) layout.

Orientation rule: the volume is first brought to the closest canonical RAS+ orientation; then
S runs inferior → superior (RAS z), H runs anterior → posterior (image top is anterior), and W
runs patient right → left (radiological convention: the patient's right is on the image's
left). A single-slice volume gives (H, W). Writing applies the exact inverse.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from deid.errors import OutputError, UnreadableFileError
from deid.io.atomic import atomic_write_bytes
from deid.io.record import Encoding, Record

_RAS = axcodes2ornt(("R", "A", "S"))
_HEADER_TEXT = ("descrip", "aux_file", "intent_name", "db_name")


def _open(path: Path) -> nib.Nifti1Image | nib.Nifti2Image:
    try:
        image = nib.load(path)
    except PermissionError as exc:
        raise UnreadableFileError(str(path), "permission denied; grant read access") from exc
    except Exception as exc:  # nibabel raises many types for bad headers
        raise UnreadableFileError(str(path), f"NIfTI could not be read ({exc})") from exc
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image, nib.Nifti1Pair, nib.Nifti2Pair)):
        raise UnreadableFileError(str(path), f"not a NIfTI image ({type(image).__name__})")
    return image


def to_slices(ras: np.ndarray) -> np.ndarray:
    """(X, Y, Z) in RAS+ → (S, H, W) per the module's orientation rule."""
    return np.ascontiguousarray(ras.transpose(2, 1, 0)[:, ::-1, ::-1])


def from_slices(slices: np.ndarray) -> np.ndarray:
    """Inverse of ``to_slices``."""
    return np.ascontiguousarray(slices[:, ::-1, ::-1].transpose(2, 1, 0))


def load_nifti(key: str, path: Path) -> Record:
    """Decode a 3-D NIfTI volume (``.nii``, ``.nii.gz`` or a ``.hdr``/``.img`` pair).

    Raises
    ------
    UnreadableFileError
        If nibabel cannot read it, or it is not 3-D (4-D series are not supported).
    """
    image = _open(path)
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise UnreadableFileError(
            str(path), f"only 3-D NIfTI volumes are supported, this one has shape {image.shape}"
        )
    try:
        data = image.get_fdata(dtype=np.float32, caching="unchanged").reshape(shape)
    except Exception as exc:
        raise UnreadableFileError(str(path), f"NIfTI voxel data could not be read ({exc})") from exc
    transform = ornt_transform(io_orientation(image.affine), _RAS)
    slices = to_slices(apply_orientation(data, transform))
    if slices.shape[0] == 1:
        slices = slices[0]
    dtype = np.dtype(image.get_data_dtype()).newbyteorder("=")
    slope, inter = image.dataobj.slope, image.dataobj.inter
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = float(info.min), float(info.max)
    else:
        low, high = -np.inf, np.inf
    header = image.header
    metadata: dict[str, Any] = {
        name: header[name].item().decode("latin-1", errors="replace").strip("\x00 ")
        for name in _HEADER_TEXT
        if name in header and header[name].item()
    }
    metadata.update(
        shape=[int(n) for n in image.shape],
        voxel_size=[float(v) for v in header.get_zooms()[:3]],
        axcodes="".join(nib.aff2axcodes(image.affine)),
        gzip=path.read_bytes()[:2] == b"\x1f\x8b",
    )
    return Record(
        key=key,
        paths=(path,),
        kind="nifti",
        pixels=slices,
        modality="OT",
        source_dtype=dtype,
        bits_stored=dtype.itemsize * 8,
        photometric="MONOCHROME2",
        metadata=metadata,
        encoding=Encoding(
            stored_min=low,
            stored_max=high,
            slopes=np.array([slope], dtype=np.float64),
            intercepts=np.array([inter], dtype=np.float64),
        ),
    )


def write_nifti(record: Record, pixels: np.ndarray, out_path: Path) -> None:
    """Write ``pixels`` (``record``'s layout and units) with the source's header and dtype.

    Raises
    ------
    OutputError
        If the source is a ``.hdr``/``.img`` pair (write single-file NIfTI instead).
    """
    source = _open(record.paths[0])
    if not isinstance(source, (nib.Nifti1Image, nib.Nifti2Image)):
        raise OutputError(
            f"{record.paths[0]}: writing .hdr/.img NIfTI pairs is not supported; "
            "convert the source to a single .nii file first"
        )
    slices = pixels[np.newaxis] if pixels.ndim == 2 else pixels
    back = ornt_transform(_RAS, io_orientation(source.affine))
    data = apply_orientation(from_slices(np.asarray(slices, dtype=np.float64)), back)
    data = data.reshape(source.shape)
    encoding = record.encoding
    assert encoding is not None and encoding.slopes is not None and encoding.intercepts is not None
    slope, inter = float(encoding.slopes[0]), float(encoding.intercepts[0])
    if not np.isfinite(slope) or slope == 0.0:
        slope = 1.0
    if not np.isfinite(inter):
        inter = 0.0
    stored = (data - inter) / slope
    if record.source_dtype.kind in "iu":
        stored = np.clip(np.rint(stored), encoding.stored_min, encoding.stored_max)
    header = source.header.copy()
    image = type(source)(stored.astype(record.source_dtype), source.affine, header)
    image.header.set_slope_inter(slope, inter)
    payload = image.to_bytes()
    atomic_write_bytes(
        out_path, gzip.compress(payload, mtime=0) if record.metadata.get("gzip") else payload
    )
