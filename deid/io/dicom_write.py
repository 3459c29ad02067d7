"""Write new pixels into a copy of the source DICOM file(s), uncompressed Explicit VR Little
Endian, with the stored values recovered by inverting the read-time mapping."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset
from pydicom.pixels import pack_bits
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)

from deid.errors import OutputError
from deid.io.atomic import atomic_write_bytes
from deid.io.dicom_read import read_dataset, stored_dtype
from deid.io.record import Encoding, Record

# Syntaxes that are always lossy; JPEG 2000 may be either, and then the source's own
# LossyImageCompression value is kept.
LOSSY_SYNTAXES = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless})
# Elements that only make sense for the source's encoding or its palette.
_ENCODING_ONLY = ("ExtendedOffsetTable", "ExtendedOffsetTableLengths")
_PALETTE = (
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData",
    "PaletteColorLookupTableUID",
)


def to_stored(values: np.ndarray, encoding: Encoding, first_frame: int) -> np.ndarray:
    """Invert the modality mapping of frames ``first_frame...`` of grey ``values`` (F, H, W)."""
    values = np.asarray(values, dtype=np.float64)
    if encoding.invert_pivot is not None:
        values = encoding.invert_pivot - values
    if encoding.modality_lut is not None:
        first, entries = encoding.modality_lut
        order = np.argsort(entries, kind="stable")
        ranked = entries[order]
        right = np.clip(np.searchsorted(ranked, values), 1, ranked.size - 1)
        nearer_left = np.abs(values - ranked[right - 1]) <= np.abs(ranked[right] - values)
        stored = order[np.where(nearer_left, right - 1, right)] + first
    else:
        assert encoding.slopes is not None and encoding.intercepts is not None
        frames = slice(first_frame, first_frame + values.shape[0])
        slopes = encoding.slopes[frames].reshape(-1, 1, 1)
        intercepts = encoding.intercepts[frames].reshape(-1, 1, 1)
        stored = (values - intercepts) / slopes
    return np.clip(np.rint(stored), encoding.stored_min, encoding.stored_max)


def _to_little_endian(ds: Dataset) -> None:
    """Byte-swap the binary values pydicom leaves in their original big-endian order."""
    sizes = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
    for element in ds.iterall():  # iterating also converts every raw element
        size = sizes.get(element.VR)
        if size and isinstance(element.value, bytes) and element.keyword != "PixelData":
            element.value = (
                np.frombuffer(element.value, dtype=f">u{size}").astype(f"<u{size}").tobytes()
            )


def _set_pixels(ds: Dataset, stored: np.ndarray, dtype: np.dtype, colour: bool) -> None:
    """Replace Pixel Data with ``stored`` (frames first when several) as native little endian."""
    source_syntax = UID(ds.file_meta.TransferSyntaxUID)
    if not source_syntax.is_little_endian:
        _to_little_endian(ds)
    else:
        for _ in ds.iterall():  # resolve raw elements: implicit-VR sources need VRs for explicit
            pass
    for keyword in _ENCODING_ONLY:
        if keyword in ds:
            del ds[keyword]
    if source_syntax in LOSSY_SYNTAXES:
        ds.LossyImageCompression = "01"  # decompressing does not undo the loss; PS3.3 C.7.6.1.1.5
    if colour:
        ds.PhotometricInterpretation = "RGB"
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        for keyword in _PALETTE:
            if keyword in ds:
                del ds[keyword]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if dtype.kind == "f":  # Float / Double Float Pixel Data: no rescale, no stored range
        keyword = "FloatPixelData" if dtype.itemsize == 4 else "DoubleFloatPixelData"
        setattr(ds, keyword, stored.astype(dtype.newbyteorder("<")).tobytes())
        ds[keyword].is_undefined_length = False
        return
    bits = dtype.itemsize * 8
    allocated = int(ds.get("BitsAllocated", bits))
    if allocated == 1:  # binary images stay bit-packed
        data = pack_bits(stored.astype(np.uint8).ravel())
    else:
        if allocated != bits:
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
            ds.PixelRepresentation = 0 if dtype.kind == "u" else 1
        data = np.ascontiguousarray(stored.astype(dtype.newbyteorder("<"))).tobytes()
    ds.PixelData = data + b"\x00" * (len(data) % 2)
    element = ds["PixelData"]
    element.VR = "OB" if allocated <= 8 else "OW"
    element.is_undefined_length = False


def _colour_dtype(record: Record) -> np.dtype:
    """Sample type for RGB output: the source's, or wide enough for a palette's LUT values."""
    assert record.encoding is not None
    if record.photometric == "PALETTE COLOR":
        return np.dtype(np.uint8 if record.encoding.stored_max <= 255 else np.uint16)
    return record.source_dtype


def write_dicom(record: Record, pixels: np.ndarray, out_paths: list[Path]) -> None:
    """Write one output file per source file of ``record`` (slices of a series in order).

    Raises
    ------
    OutputError
        If the source files no longer hold the frames the record was read from.
    """
    encoding = record.encoding
    assert encoding is not None
    grey = record.photometric.startswith("MONOCHROME")
    frames = pixels[np.newaxis] if pixels.ndim == (2 if grey else 3) else pixels
    start = 0
    for source, target in zip(record.paths, out_paths, strict=True):
        ds = read_dataset(source, pixels=True)
        dtype = stored_dtype(ds)
        count = int(ds.get("NumberOfFrames", 1) or 1)
        if start + count > frames.shape[0]:
            raise OutputError(
                f"{source}: holds more frames than {record.key}'s pixels; was it changed "
                "after it was read? Read it again"
            )
        chunk = frames[start : start + count]
        if dtype.kind == "f":
            stored = np.asarray(chunk, dtype=np.float64)
            if encoding.invert_pivot is not None:
                stored = encoding.invert_pivot - stored
        elif grey:
            stored = to_stored(chunk, encoding, start)
        else:
            dtype = _colour_dtype(record)
            stored = np.clip(np.rint(np.asarray(chunk, dtype=np.float64)), 0, encoding.stored_max)
        if count == 1:
            stored = stored[0]
        _set_pixels(ds, stored, dtype, colour=not grey)
        start += count
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        atomic_write_bytes(target, buffer.getvalue())
    if start != frames.shape[0]:
        raise OutputError(
            f"{record.key}: wrote {start} frames but the pixels hold {frames.shape[0]}"
        )
