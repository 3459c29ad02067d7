"""Write new pixels for a Record in the same format and bit depth as its source."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deid.errors import InputError
from deid.io.dicom_write import write_dicom
from deid.io.image_write import write_image
from deid.io.nifti_io import write_nifti
from deid.io.record import Record


def write_like(record: Record, new_pixels: np.ndarray, out_paths: Sequence[Path]) -> None:
    """Write ``new_pixels`` in ``record``'s format, layout and bit depth, one file per source.

    DICOM: a copy of each source data set with Pixel Data replaced, uncompressed Explicit VR
    Little Endian (file meta updated; a lossy source is flagged LossyImageCompression "01"),
    rescale and MONOCHROME1 inverted, values clipped to the stored range; palette and YBR
    sources are written as RGB. PNG/TIFF: same Pillow mode and depth, ancillary metadata
    dropped. JPEG: quality 95. NIfTI: the source header, dtype, scaling and orientation.
    Every file is written atomically.

    Parameters
    ----------
    record
        The record the pixels belong to (as returned by ``load``).
    new_pixels
        Same shape as ``record.pixels``, in the same modality units.
    out_paths
        One target per ``record.paths`` entry (slice order for series).

    Raises
    ------
    InputError
        If the shape, the number of paths or the values do not fit the record.
    OutputError
        If this source cannot be written back in its own format.
    """
    pixels = np.asarray(new_pixels)
    if pixels.shape != record.pixels.shape:
        raise InputError(
            f"{record.key}: new pixels have shape {pixels.shape} but the record has "
            f"{record.pixels.shape}; write_like keeps the source geometry"
        )
    if not np.all(np.isfinite(pixels)):
        raise InputError(
            f"{record.key}: new pixels contain NaN or infinity; fix them before writing"
        )
    targets = [Path(path) for path in out_paths]
    if len(targets) != len(record.paths):
        raise InputError(
            f"{record.key}: {len(targets)} output path(s) given for {len(record.paths)} source "
            "file(s); give one output path per source file"
        )
    if record.kind == "dicom":
        write_dicom(record, pixels, targets)
    elif record.kind == "nifti":
        write_nifti(record, pixels, targets[0])
    else:
        write_image(record, pixels, targets[0])
