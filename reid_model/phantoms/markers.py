"""Laterality markers ("L"/"R") placed on radiographs by the radiographer."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont


@lru_cache(maxsize=16)
def _glyph(text: str, height: int) -> np.ndarray:
    font = ImageFont.load_default(size=height)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), text, fill=255, font=font)
    mask = np.asarray(canvas, dtype=np.float32) / 255.0
    mask.setflags(write=False)
    return mask


def stamp_marker(
    image: np.ndarray, text: str, row: int, col: int, height: int, value: float
) -> np.ndarray:
    """Blend ``text`` into a 2D float image at (row, col) with intensity ``value``; returns a copy.

    The glyph is clipped at the image border.
    """
    mask = _glyph(text, height)
    out = image.copy()
    r1, c1 = min(row + mask.shape[0], image.shape[0]), min(col + mask.shape[1], image.shape[1])
    r0, c0 = max(row, 0), max(col, 0)
    if r1 <= r0 or c1 <= c0:
        return out
    m = mask[r0 - row : r1 - row, c0 - col : c1 - col]
    out[r0:r1, c0:c1] = out[r0:r1, c0:c1] * (1.0 - m) + value * m
    return out
