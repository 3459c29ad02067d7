"""Strip identifying metadata from PNG, JPEG and TIFF files while keeping every pixel.

PNG and TIFF are decoded and re-encoded losslessly from a fresh image that carries no text
chunks, EXIF, XMP, ICC profile or TIFF tags beyond what the pixels need. JPEG is not
re-encoded (that would lose quality): its segments are rewritten, dropping comments and every
application segment except a thumbnail-free JFIF header and the Adobe colour-transform marker,
and anything after the end-of-image marker. The entropy-coded data is copied unchanged.

Known limits: dropping EXIF drops its Orientation tag (a rotated photograph then shows unrotated),
and dropping the ICC profile can shift colours slightly; multi-picture (MPO) JPEGs keep their
first picture only.
"""

from __future__ import annotations

import io
import struct
import warnings
from typing import Any

from PIL import Image, UnidentifiedImageError

from deid.errors import UnreadableFileError
from deid.io.image_read import image_metadata

# TIFF compressions that Pillow writes losslessly; anything else is written uncompressed.
_LOSSLESS_TIFF = frozenset({"raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits"})
_FORMATS = {"png": "PNG", "tiff": "TIFF"}
# JPEG markers without a length field: TEM, RSTn, SOI, EOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})
_SOS, _EOI, _COM, _APP0, _APP14 = 0xDA, 0xD9, 0xFE, 0xE0, 0xEE


def metadata_keys(data: bytes) -> list[str]:
    """Names (never values) of the metadata entries Pillow sees in an image file."""
    with Image.open(io.BytesIO(data)) as image:
        return sorted(image_metadata(image))


def strip_metadata(data: bytes, kind: str, name: str = "") -> bytes:
    """Return ``data`` (a ``png``, ``jpeg`` or ``tiff`` file) without its metadata.

    Parameters
    ----------
    data
        The file's bytes.
    kind
        ``"png"``, ``"jpeg"`` or ``"tiff"``.
    name
        Used in error messages only.

    Raises
    ------
    UnreadableFileError
        If the file cannot be parsed, or the stripped file no longer decodes.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            clean = _strip_jpeg(data) if kind == "jpeg" else _reencode(data, kind)
            with Image.open(io.BytesIO(clean)) as check:  # the result must still decode
                check.load()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as exc:
        raise UnreadableFileError(
            name, f"{kind.upper()} metadata could not be removed ({exc})"
        ) from exc
    return clean


def _fresh(frame: Image.Image) -> Image.Image:
    """A copy holding only pixels, palette and transparency: no info, EXIF or TIFF tags."""
    copy = frame.copy()
    transparency = frame.info.get("transparency")
    copy.info = {} if transparency is None else {"transparency": transparency}
    return copy


def _reencode(data: bytes, kind: str) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        compression = image.info.get("compression")
        frames = []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            frames.append(_fresh(image))
    options: dict[str, Any] = {}
    if kind == "tiff" and compression in _LOSSLESS_TIFF:
        options["compression"] = compression
    if len(frames) > 1:
        options.update(save_all=True, append_images=frames[1:])
    buffer = io.BytesIO()
    frames[0].save(buffer, format=_FORMATS[kind], **options)
    return buffer.getvalue()


def _strip_jpeg(data: bytes) -> bytes:
    """Rewrite JPEG segments, keeping only what decoding needs."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("no JPEG start-of-image marker")
    out = bytearray(b"\xff\xd8")
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"expected a marker at byte {pos}")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= len(data):
            break
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            out += b"\xff\xd9"
            return bytes(out)  # trailing bytes after EOI are dropped
        if marker in _STANDALONE:
            out += bytes((0xFF, marker))
            continue
        if pos + 2 > len(data):
            raise ValueError("truncated JPEG segment")
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        segment = data[pos + 2 : pos + length]
        end = pos + length
        if marker == _SOS:
            out += bytes((0xFF, marker)) + data[pos:end]
            scan_end = _entropy_end(data, end)
            out += data[end:scan_end]
            pos = scan_end
            continue
        kept = _kept_segment(marker, segment)
        if kept is not None:
            out += bytes((0xFF, marker)) + struct.pack(">H", len(kept) + 2) + kept
        pos = end
    raise ValueError("no JPEG end-of-image marker")


def _kept_segment(marker: int, payload: bytes) -> bytes | None:
    """The payload to keep for a segment, or None to drop it."""
    if marker == _COM or 0xE0 <= marker <= 0xEF:
        if marker == _APP0 and payload.startswith(b"JFIF\x00") and len(payload) >= 14:
            return payload[:12] + b"\x00\x00"  # version, units, density; no thumbnail
        if marker == _APP14 and payload.startswith(b"Adobe") and len(payload) == 12:
            return payload  # colour transform flag, needed to decode RGB/CMYK correctly
        return None
    return payload


def _entropy_end(data: bytes, pos: int) -> int:
    """Index of the first marker after entropy-coded data starting at ``pos``."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            raise ValueError("entropy-coded data runs to the end of the file")
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1 if following == 0xFF else 2  # stuffed byte, restart marker or fill
            continue
        return pos
