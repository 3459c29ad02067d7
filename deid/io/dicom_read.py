"""Decode DICOM files and series into Records (pydicom >= 3 with the pylibjpeg decoders)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from deid.errors import UnreadableFileError
from deid.io.dicom_meta import dicom_metadata, frame_element
from deid.io.record import Encoding, Record, Window
from deid.io.series import SliceInfo, order_slices

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Headers of files up to this size are parsed from memory (faster); larger files are read
# through the file, so their pixels are not loaded just to read a header.
_HEADER_READ_LIMIT = 16 << 20


def read_dataset(
    path: Path,
    *,
    pixels: bool,
    data: bytes | None = None,
    tags: Sequence[str] | None = None,
) -> Dataset:
    """Read a DICOM file, with or without preamble and file meta, without changing it.

    With ``pixels=False`` values over 1 KiB (Pixel Data among them) are left unread but their
    elements stay present, so ``has_pixels`` still works. A file that ``sniff`` recognised as
    a bare data set (no ``DICM`` prefix) is read with ``force=True``; its transfer syntax is
    then taken from how pydicom found it encoded.

    Parameters
    ----------
    path
        The file; named in errors, and read unless ``data`` is given.
    pixels
        Read Pixel Data (and every other long value) too.
    data
        The file's bytes, when the caller already holds them. Files are otherwise read into
        memory first (header-only reads of large files excepted): pydicom parses a buffer
        faster than a file object.
    tags
        Read only these keywords (plus the file meta); the rest is skipped unparsed.

    Raises
    ------
    UnreadableFileError
        If the file cannot be opened or parsed.
    """
    defer = None if pixels else 1024
    try:
        if data is None and (pixels or path.stat().st_size <= _HEADER_READ_LIMIT):
            data = path.read_bytes()

        def source() -> Path | io.BytesIO:
            return path if data is None else io.BytesIO(data)

        try:
            ds = pydicom.dcmread(source(), defer_size=defer, specific_tags=tags)
        except InvalidDicomError:
            ds = pydicom.dcmread(source(), defer_size=defer, specific_tags=tags, force=True)
    except PermissionError as exc:
        raise UnreadableFileError(str(path), "permission denied; grant read access") from exc
    except (OSError, EOFError, InvalidDicomError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableFileError(str(path), f"not a readable DICOM file ({exc})") from exc
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding
        if implicit is None:
            raise UnreadableFileError(str(path), "DICOM file without a transfer syntax")
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
    return ds


def has_pixels(ds: Dataset) -> bool:
    """True when ``ds`` holds Pixel Data, Float Pixel Data or Double Float Pixel Data."""
    return any(keyword in ds for keyword in PIXEL_KEYWORDS)


def missing_pixels_reason(ds: Dataset) -> str:
    """Why a DICOM object without Pixel Data cannot be used, naming its SOP class."""
    sop_class = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
    name = getattr(sop_class, "name", None) or "unknown SOP class"
    if "Image" in name:
        return f"{name} object without pixel data (is the file truncated?)"
    return f"DICOM object without pixel data ({name}); nothing to score"


def stored_dtype(ds: Dataset) -> np.dtype:
    """The numpy type of one stored sample (before any rescale)."""
    if "FloatPixelData" in ds:
        return np.dtype(np.float32)
    if "DoubleFloatPixelData" in ds:
        return np.dtype(np.float64)
    allocated = int(ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    size = 1 if allocated <= 8 else (2 if allocated <= 16 else 4)
    return np.dtype(f"{'i' if signed else 'u'}{size}")


def stored_range(ds: Dataset) -> tuple[float, float]:
    """Smallest and largest stored value that Bits Stored and Pixel Representation allow."""
    if stored_dtype(ds).kind not in "iu":
        info = np.finfo(stored_dtype(ds))
        return float(info.min), float(info.max)
    bits = int(ds.get("BitsStored", ds.BitsAllocated))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


@dataclass
class _Frames:
    """Stored values of one file, always with a leading frame axis, plus their mapping."""

    values: np.ndarray  # (F, H, W) or (F, H, W, 3)
    slopes: np.ndarray  # (F,)
    intercepts: np.ndarray  # (F,)
    modality_lut: tuple[int, np.ndarray] | None
    photometric: str
    colour_max: float  # full-scale value of colour samples (LUT depth for palette images)


def _decode_error(ds: Dataset, path: Path, exc: Exception) -> UnreadableFileError:
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return UnreadableFileError(
            str(path), f"pydicom has no decoder for transfer syntax {syntax.name} ({syntax})"
        )
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies.values()) or "a decoder plugin"
        return UnreadableFileError(
            str(path),
            f"no installed decoder for {syntax.name}: {needs} (for example pip install "
            "pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle pyjpegls)",
        )
    message = " ".join(str(exc).split())
    return UnreadableFileError(
        str(path), f"pixel data could not be decoded ({syntax.name}): {message}"
    )


def _rescale(ds: Dataset, frames: int) -> tuple[np.ndarray, np.ndarray]:
    slopes = np.ones(frames, dtype=np.float64)
    intercepts = np.zeros(frames, dtype=np.float64)
    for index in range(frames):
        item = frame_element(ds, "PixelValueTransformationSequence", index)
        source = item if item is not None else ds
        slope, intercept = source.get("RescaleSlope"), source.get("RescaleIntercept")
        if slope is not None and float(slope) != 0.0:
            slopes[index] = float(slope)
        if intercept is not None:
            intercepts[index] = float(intercept)
    return slopes, intercepts


def _lut_entries(item: Dataset, signed_input: bool) -> tuple[int, np.ndarray, int]:
    """(first mapped value, entries, bits per entry) of a Modality or VOI LUT item."""
    count, first, bits = (int(v) for v in item.LUTDescriptor)
    count = count or 65536
    data = item.LUTData
    if isinstance(data, bytes):
        data = np.frombuffer(data, dtype="<u1" if bits <= 8 else "<u2")
    entries = np.asarray(data, dtype=np.float64).ravel()[:count]
    if signed_input and first > 32767:
        first -= 65536  # the descriptor's first value is US or SS; read as US, negatives wrap
    return first, entries, bits


def _decode_frames(ds: Dataset, path: Path) -> _Frames:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about padding it already handles
            values = ds.pixel_array
    except Exception as exc:  # decoders raise many types; each becomes a skip reason
        raise _decode_error(ds, path, exc) from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    colour_max = float(2 ** int(ds.get("BitsStored", ds.get("BitsAllocated", 8))) - 1)
    if photometric == "PALETTE COLOR":
        try:
            values = apply_color_lut(values, ds)
        except Exception as exc:
            raise UnreadableFileError(str(path), f"palette colour lookup failed: {exc}") from exc
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        colour_max = float(2**bits - 1)
    expected_ndim = 3 if photometric.startswith("MONOCHROME") else 4
    if values.ndim == expected_ndim - 1:
        values = values[np.newaxis]
    if values.ndim != expected_ndim or values.shape[0] != frames:
        raise UnreadableFileError(
            str(path), f"unexpected pixel array shape {values.shape} for {frames} frame(s)"
        )
    slopes, intercepts = _rescale(ds, frames)
    modality_lut = None
    if "ModalityLUTSequence" in ds and photometric.startswith("MONOCHROME"):
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        first, entries, _ = _lut_entries(ds.ModalityLUTSequence[0], signed)
        modality_lut = (first, entries)
    return _Frames(values, slopes, intercepts, modality_lut, photometric, colour_max)


def _window(ds: Dataset) -> Window | None:
    """The first VOI window or VOI LUT of the file (top level, else enhanced functional groups)."""
    source = frame_element(ds, "FrameVOILUTSequence", 0) or ds
    if "VOILUTSequence" in source and len(source.VOILUTSequence):
        signed = (
            int(ds.get("PixelRepresentation", 0)) == 1
            or float(ds.get("RescaleIntercept", 0) or 0) < 0
        )
        first, entries, bits = _lut_entries(source.VOILUTSequence[0], signed)
        return Window(lut_first=first, lut=entries, lut_bits=bits)
    center, width = source.get("WindowCenter"), source.get("WindowWidth")
    if center is None or width is None:
        return None
    center = center[0] if isinstance(center, MultiValue) else center
    width = width[0] if isinstance(width, MultiValue) else width
    function = str(source.get("VOILUTFunction", "LINEAR")).strip().upper() or "LINEAR"
    return Window(center=float(center), width=float(width), function=function)


def _to_modality(frames: _Frames) -> np.ndarray:
    values = frames.values
    if not frames.photometric.startswith("MONOCHROME"):
        return values.astype(np.float32)
    if frames.modality_lut is not None:
        first, entries = frames.modality_lut
        index = np.clip(values.astype(np.int64) - first, 0, entries.size - 1)
        return entries[index].astype(np.float32)
    shape = (-1,) + (1,) * (values.ndim - 1)
    out = values * frames.slopes.reshape(shape) + frames.intercepts.reshape(shape)
    return out.astype(np.float32)


def _modality_extent(frames: _Frames, low: float, high: float) -> tuple[float, float]:
    if frames.modality_lut is not None:
        entries = frames.modality_lut[1]
        return float(entries.min()), float(entries.max())
    ends = (
        low * frames.slopes[0] + frames.intercepts[0],
        high * frames.slopes[0] + frames.intercepts[0],
    )
    return float(min(ends)), float(max(ends))


def load_dicom(key: str, paths: tuple[Path, ...]) -> Record:
    """Decode one DICOM file, or the slices of one series, into a Record.

    A single-frame file gives (H, W) pixels, a multi-frame file or a series (S, H, W); colour
    adds a trailing axis of 3. Palette colour and YBR are converted to RGB. Series slices are
    put in the order of ``deid.io.series`` (``Record.paths`` follows it); files that rule
    cannot order are kept in the order given.

    Raises
    ------
    UnreadableFileError
        If a file cannot be read or decoded, has no pixel data, or the slices do not match.
    """
    # Slices are converted to float32 one at a time so that only one file's bytes are held.
    first: Dataset | None = None
    head: _Frames | None = None
    parts: list[np.ndarray] = []
    slopes: list[np.ndarray] = []
    intercepts: list[np.ndarray] = []
    instance_uids: list[str] = []
    infos: list[SliceInfo] = []
    for path in paths:
        ds = read_dataset(path, pixels=True)
        if not has_pixels(ds):
            raise UnreadableFileError(str(path), missing_pixels_reason(ds))
        frames = _decode_frames(ds, path)
        if head is None:
            first, head = ds, frames
        elif (
            frames.values.shape[1:] != head.values.shape[1:]
            or frames.photometric != head.photometric
        ):
            raise UnreadableFileError(
                str(path),
                f"slice {frames.values.shape[1:]} {frames.photometric} does not match "
                f"the series' first slice {head.values.shape[1:]} {head.photometric}",
            )
        parts.append(_to_modality(frames))
        slopes.append(frames.slopes)
        intercepts.append(frames.intercepts)
        instance_uids.append(str(ds.get("SOPInstanceUID", "")))
        infos.append(SliceInfo.from_dataset(path, ds))
    if first is None or head is None:
        raise UnreadableFileError("", "no DICOM files given")
    # Callers may pass a series' files in any order: sort them by the discovery rule.
    ordered = order_slices(infos) if len(infos) > 1 and head.values.shape[0] == 1 else None
    order = [infos.index(info) for info in ordered] if ordered is not None else []
    if order and order != sorted(order):
        parts = [parts[i] for i in order]
        slopes = [slopes[i] for i in order]
        intercepts = [intercepts[i] for i in order]
        instance_uids = [instance_uids[i] for i in order]
        paths = tuple(paths[i] for i in order)
        first = read_dataset(paths[0], pixels=False)
    pixels = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    del parts
    low, high = stored_range(first)
    grey = head.photometric.startswith("MONOCHROME")
    pivot = None
    if head.photometric == "MONOCHROME1":
        pivot = sum(_modality_extent(head, low, high))
        pixels = (pivot - pixels).astype(np.float32)
    if pixels.shape[0] == 1:
        pixels = pixels[0]
    encoding = Encoding(
        stored_min=low if grey else 0.0,
        stored_max=high if grey else head.colour_max,
        slopes=np.concatenate(slopes),
        intercepts=np.concatenate(intercepts),
        modality_lut=head.modality_lut,
        invert_pivot=pivot,
    )
    metadata: dict[str, Any] = dicom_metadata(first)
    if len(paths) > 1:
        metadata["SOPInstanceUIDs"] = instance_uids
    return Record(
        key=key,
        paths=tuple(paths),
        kind="dicom",
        pixels=np.ascontiguousarray(pixels),
        modality=str(first.get("Modality", "OT")).strip() or "OT",
        source_dtype=stored_dtype(first),
        bits_stored=int(first.get("BitsStored", first.get("BitsAllocated", 8))),
        photometric=head.photometric,
        metadata=metadata,
        encoding=encoding,
        window=_window(first) if grey else None,
    )
