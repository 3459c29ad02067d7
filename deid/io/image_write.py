"""Write PNG, JPEG and TIFF files in the source's Pillow mode and bit depth.

Text chunks, EXIF and other ancillary metadata are not copied: that is where identifying text
lives in plain images, and a de-identified release should not carry it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from deid.io.atomic import atomic_write_bytes
from deid.io.record import Record

_FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF"}
JPEG_QUALITY = 95


def _to_image(frame: np.ndarray, mode: str) -> Image.Image:
    if mode == "1":
        return Image.fromarray(frame > 0)
    if mode.startswith("I;16"):
        return Image.fromarray(frame.astype(np.uint16))
    if mode == "I":
        return Image.fromarray(frame.astype(np.int32))
    if mode == "F":
        return Image.fromarray(frame.astype(np.float32))
    return Image.fromarray(frame.astype(np.uint8))


def write_image(record: Record, pixels: np.ndarray, out_path: Path) -> None:
    """Encode ``pixels`` like ``record``'s source (same mode; JPEG at quality 95) atomically."""
    encoding = record.encoding
    assert encoding is not None and encoding.pil_mode is not None
    values = np.asarray(pixels, dtype=np.float64)
    if record.source_dtype.kind != "f":
        values = np.clip(np.rint(values), encoding.stored_min, encoding.stored_max)
    frames = list(values) if record.is_volume else [values]
    images = [_to_image(frame, encoding.pil_mode) for frame in frames]
    buffer = io.BytesIO()
    options: dict[str, object] = {"format": _FORMATS[record.kind]}
    if record.kind == "jpeg":
        options["quality"] = JPEG_QUALITY
    if len(images) > 1:
        options.update(save_all=True, append_images=images[1:])
    images[0].save(buffer, **options)
    atomic_write_bytes(out_path, buffer.getvalue())
