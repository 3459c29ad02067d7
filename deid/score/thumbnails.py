"""Small previews for the report, made only when asked (``--thumbnails``): images are PHI."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from deid.errors import UnreadableFileError
from deid.report.schema import Thumbnail
from deid.score.embed import Unit

MAX_THUMBNAILS = 24
SIZE = 128


def _preview(display: np.ndarray) -> str:
    """Middle slice of a [0, 1] display image as a base64 PNG, longest side ``SIZE``."""
    if display.ndim == 4 or (display.ndim == 3 and display.shape[-1] != 3):
        display = display[display.shape[0] // 2]
    image = Image.fromarray(np.clip(display * 255.0 + 0.5, 0, 255).astype(np.uint8))
    image.thumbnail((SIZE, SIZE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnails(units: Sequence[Unit], modalities: Sequence[str]) -> list[Thumbnail]:
    """Previews of the first :data:`MAX_THUMBNAILS` images, labelled by modality and index only."""
    from deid.io import load

    out: list[Thumbnail] = []
    for index, (unit, modality) in enumerate(zip(units, modalities, strict=True)):
        if len(out) == MAX_THUMBNAILS:
            break
        try:
            record = load(unit.items[0])
        except UnreadableFileError:
            continue
        out.append({"label": f"{modality} #{index + 1}", "png_base64": _preview(record.display())})
    return out
