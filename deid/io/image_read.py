"""Decode PNG, JPEG and TIFF files into Records with Pillow."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from deid.errors import UnreadableFileError
from deid.io.record import Encoding, Kind, Record

# Pillow mode → (numpy dtype of a sample, bits stored, grey?). Modes not listed are converted to
# RGB (palette, CMYK, YCbCr, ...) or to L/RGB without alpha, see ``_normalise_mode``.
PIL_MODES: dict[str, tuple[np.dtype, int, bool]] = {
    "1": (np.dtype(np.uint8), 1, True),
    "L": (np.dtype(np.uint8), 8, True),
    "I;16": (np.dtype(np.uint16), 16, True),
    "I;16B": (np.dtype(np.uint16), 16, True),
    "I;16L": (np.dtype(np.uint16), 16, True),
    "I": (np.dtype(np.int32), 32, True),
    "F": (np.dtype(np.float32), 32, True),
    "RGB": (np.dtype(np.uint8), 8, False),
}
_MAX_TEXT = 2000  # longer text chunks and tags are cut: metadata must stay small


def _normalise_mode(image: Image.Image) -> Image.Image:
    """Convert modes without a direct sample mapping; alpha channels are dropped."""
    if image.mode in PIL_MODES:
        return image
    if image.mode.startswith(("I;", "F;")):  # other integer / float layouts: widen losslessly
        return image.convert(image.mode[0])
    if image.mode in ("LA", "La", "PA") or (image.mode == "P" and _palette_is_grey(image)):
        return image.convert("L")
    return image.convert("RGB")


def _palette_is_grey(image: Image.Image) -> bool:
    palette = image.getpalette()
    if not palette:
        return False
    colours = np.asarray(palette, dtype=np.int32).reshape(-1, 3)
    return bool(np.all(colours[:, 0] == colours[:, 1]) and np.all(colours[:, 1] == colours[:, 2]))


def _short(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value.strip("\x00")[:_MAX_TEXT]
    if isinstance(value, (int, float, bool)):
        return value
    return str(value)[:_MAX_TEXT]


def image_metadata(image: Image.Image) -> dict[str, Any]:
    """Text chunks (PNG), EXIF tags (JPEG, TIFF, PNG eXIf) and TIFF text tags, JSON-able."""
    metadata: dict[str, Any] = {}
    text = getattr(image, "text", None) or {}
    for name, value in text.items():
        metadata[f"text:{name}"] = _short(value)
    for tag, value in image.getexif().items():
        metadata[f"exif:{ExifTags.TAGS.get(tag, str(tag))}"] = _short(value)
    for name in ("comment", "Description"):
        if name in image.info:
            metadata[f"info:{name}"] = _short(image.info[name])
    return metadata


def _frames(image: Image.Image) -> list[np.ndarray]:
    frames = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        frames.append(np.asarray(_normalise_mode(image)))
    return frames


def load_image(key: str, path: Path, kind: Kind) -> Record:
    """Decode a PNG, JPEG or TIFF file (a multi-page TIFF becomes an (S, H, W[, 3]) volume).

    Palette images become RGB (or grey when the palette is grey); alpha is dropped.

    Raises
    ------
    UnreadableFileError
        If Pillow cannot open or decode the file.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                metadata = image_metadata(image)
                frames = _frames(image)
                image.seek(0)
                mode = _normalise_mode(image).mode
    except PermissionError as exc:
        raise UnreadableFileError(str(path), "permission denied; grant read access") from exc
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as exc:
        raise UnreadableFileError(
            str(path), f"{kind.upper()} could not be decoded ({exc})"
        ) from exc
    if len({frame.shape for frame in frames}) != 1:
        raise UnreadableFileError(str(path), "pages of this TIFF differ in size or mode")
    dtype, bits, grey = PIL_MODES[mode]
    stored = np.stack(frames) if len(frames) > 1 else frames[0]
    if mode == "1":
        stored = stored.astype(np.uint8)
    if dtype.kind == "f":
        low, high = float(np.finfo(dtype).min), float(np.finfo(dtype).max)
    else:
        low, high = (
            (0.0, float(2**bits - 1))
            if dtype.kind == "u"
            else (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
        )
    return Record(
        key=key,
        paths=(path,),
        kind=kind,
        pixels=stored.astype(np.float32),
        modality="OT",
        source_dtype=dtype,
        bits_stored=bits,
        photometric="MONOCHROME2" if grey else "RGB",
        metadata=metadata,
        encoding=Encoding(stored_min=low, stored_max=high, pil_mode=mode),
    )
