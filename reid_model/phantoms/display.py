"""Display rendering of phantom images (8-bit RGB) for contact sheets and report thumbnails."""

from __future__ import annotations

import numpy as np

from reid_model.phantoms.types import PhantomImage

CT_WINDOW = (-1000.0, 400.0)  # HU shown black..white: lung and mediastinum both readable


def display_slice(image: PhantomImage, index: int | None = None) -> np.ndarray:
    """One 2D view of ``image`` as (H, W, 3) uint8: the image itself, or slice ``index`` of a
    volume (the middle slice when None). CT uses a fixed HU window, MR its 99.5th percentile."""
    pixels = image.pixels
    if image.is_volume:
        pixels = pixels[pixels.shape[0] // 2 if index is None else index]
    if pixels.ndim == 3:  # colour photograph
        return pixels.astype(np.uint8)
    if image.dataset == "chest_ct":
        lo, hi = CT_WINDOW
    elif image.dataset == "brain_mri":
        lo, hi = 0.0, max(float(np.percentile(pixels, 99.5)), 1.0)
    else:
        lo, hi = 0.0, float((1 << image.bits_stored) - 1)
    grey = np.clip((pixels.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)
    return np.repeat((grey * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=-1)
