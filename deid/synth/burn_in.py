"""Burned-in PHI: patient name, ID and study date drawn into the pixels, as modalities and
secondary-capture workstations do, in the image's own intensity range."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from deid.synth.phi import VisitPHI, ascii_token
from reid_model.phantoms.types import PhantomImage


def burn_in_lines(phi: VisitPHI) -> tuple[str, ...]:
    """Text lines a device would stamp on the image: name, ID, study date and time."""
    name = phi.patient.name
    return (
        f"{ascii_token(name.family)}, {ascii_token(name.given)}",
        f"ID {phi.patient.patient_id}",
        phi.study_datetime.strftime("%Y-%m-%d %H:%M"),
    )


def text_mask(height: int, width: int, lines: tuple[str, ...]) -> np.ndarray:
    """Return a boolean (height, width) mask of ``lines`` drawn at the top-left corner."""
    size = max(8, height // 16)
    font = ImageFont.load_default(size=size)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    margin = max(1, height // 40)
    for row, line in enumerate(lines):
        draw.text((margin, margin + row * int(size * 1.2)), line, fill=255, font=font)
    return np.asarray(canvas) >= 128


def burned_pixels(image: PhantomImage, phi: VisitPHI) -> np.ndarray:
    """Return the pixels to store for ``image``: with burned-in text when ``burn_in_phi``.

    Grayscale text takes the image's maximum value (the top of the range of radiographs and
    MR, bright bone-like HU in CT); fundus text is white. Volumes get the text on every slice.
    The input array is never modified.
    """
    pixels = image.pixels
    if not image.burn_in_phi:
        return pixels
    height, width = pixels.shape[1:3] if image.is_volume else pixels.shape[:2]
    mask = text_mask(height, width, burn_in_lines(phi))
    out = pixels.copy()
    if out.ndim == 3 and not image.is_volume:  # RGB fundus, (H, W, 3)
        out[mask] = 255
        return out
    top = int(out.max())
    if top == int(out.min()):  # flat image: fall back to the top of the stored range
        top = 2**image.bits_stored - 1 if out.dtype.kind == "u" else 1000
    if image.is_volume:
        out[:, mask] = top
    else:
        out[mask] = top
    return out
