"""Checks that a phantom image has the pixel layout its dataset promises (see PhantomImage)
before it is written: a wrong array would otherwise become a silently broken file."""

from __future__ import annotations

import numpy as np

from deid.errors import InputError
from reid_model.phantoms.types import DATASETS, PhantomImage

# dataset -> (ndim, dtype) of PhantomImage.pixels
_LAYOUT: dict[str, tuple[int, np.dtype]] = {
    "cxr_site_a": (2, np.dtype(np.uint16)),
    "cxr_site_b": (2, np.dtype(np.uint16)),
    "chest_ct": (3, np.dtype(np.int16)),
    "brain_mri": (3, np.dtype(np.uint16)),
    "fundus": (3, np.dtype(np.uint8)),
}


def check_image(image: PhantomImage) -> None:
    """Raise if ``image`` cannot be written faithfully.

    Raises
    ------
    InputError
        For an unknown dataset, a pixel array of the wrong rank, dtype or value range, an RGB
        image without 3 channels, or slice positions that do not match the slices.
    """
    where = f"{image.patient} visit {image.visit}"
    if image.dataset not in DATASETS:
        raise InputError(f"{where}: unknown dataset {image.dataset!r}; use one of {list(DATASETS)}")
    ndim, dtype = _LAYOUT[image.dataset]
    pixels = image.pixels
    if pixels.ndim != ndim or pixels.dtype != dtype:
        raise InputError(
            f"{where}: {image.dataset} pixels must be {ndim}-D {dtype}, got "
            f"{pixels.ndim}-D {pixels.dtype} of shape {pixels.shape}"
        )
    if image.dataset == "fundus" and pixels.shape[-1] != 3:
        raise InputError(f"{where}: fundus pixels must be (H, W, 3) RGB, got {pixels.shape}")
    if pixels.dtype == np.uint16 and pixels.size and int(pixels.max()) >= 2**image.bits_stored:
        raise InputError(
            f"{where}: value {int(pixels.max())} does not fit bits_stored={image.bits_stored}"
        )
    positions = image.slice_positions_mm
    volume = image.dataset in ("chest_ct", "brain_mri")
    if (positions is not None) != volume or (positions and len(positions) != pixels.shape[0]):
        raise InputError(
            f"{where}: slice_positions_mm must give one z per slice of a volume "
            f"(pixels {pixels.shape}, positions {positions})"
        )
