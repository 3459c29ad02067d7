"""Pixels in modality units -> model input, identically for training and scoring.

Steps: robust percentile scaling of the whole image (a volume: the whole volume) to [0, 1];
grayscale -> 3 channels; zero-pad to a square (anatomy keeps its aspect ratio); resize with
antialiasing to ``img_size``; normalise with ``mean``/``std``. The configuration travels in the
checkpoint JSON. ``to_model_input`` is the differentiable tail, for code that optimises pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from deid.errors import InputError
from reid_model.config import PreprocessConfig

# DICOM modalities whose 3-D arrays are slice stacks (S, H, W), never colour images
VOLUME_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})
# percentiles are estimated on at most this many evenly strided values (large CT volumes)
_PERCENTILE_SAMPLE = 1 << 22


def _layout(pixels: np.ndarray, modality: str) -> tuple[bool, bool]:
    """Return (is_volume, is_colour) for an array of one image or volume."""
    shape = pixels.shape
    colour_last = shape[-1] in (3, 4)
    if pixels.ndim == 2:
        return False, False
    if pixels.ndim == 3:
        if colour_last and modality.upper() not in VOLUME_MODALITIES:
            return False, True
        return True, False
    if pixels.ndim == 4 and colour_last:
        return True, True
    raise InputError(
        f"Cannot preprocess pixels of shape {shape} (modality {modality!r}): expected "
        "(H, W), (H, W, 3), (S, H, W) or (S, H, W, 3)."
    )


def scale_intensity(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Map ``pixels`` linearly so the [low_pct, high_pct] percentiles become [0, 1], clipped.

    Percentiles are taken over every finite value of the array (all slices and channels), so a
    volume is scaled as a whole. Non-finite values become 0. A constant array maps to zeros.
    """
    values = np.asarray(pixels, dtype=np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        raise InputError("The image holds no finite pixel value; it cannot be used.")
    sample = values[finite] if not finite.all() else values.reshape(-1)
    if sample.size > _PERCENTILE_SAMPLE:
        sample = sample[:: sample.size // _PERCENTILE_SAMPLE + 1]
    low, high = np.percentile(sample, [cfg.low_pct, cfg.high_pct])
    scale = float(high - low)
    scaled = (values - low) / scale if scale > 0 else np.zeros_like(values)
    scaled = np.where(finite, scaled, 0.0)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def to_model_input(x: Tensor, cfg: PreprocessConfig) -> Tensor:
    """Differentiable tail of preprocessing: (N, 3, H, W) in [0, 1] -> (N, 3, S, S) normalised.

    Pads the shorter side with zeros (centred) to a square, resizes with antialiasing to
    ``cfg.img_size`` and normalises with ``cfg.mean``/``cfg.std``.
    """
    if x.dim() != 4 or x.shape[1] != cfg.in_chans:
        raise InputError(f"to_model_input expects (N, {cfg.in_chans}, H, W), got {tuple(x.shape)}.")
    h, w = x.shape[-2:]
    side = max(h, w)
    if h != w:
        top, left = (side - h) // 2, (side - w) // 2
        x = F.pad(x, (left, side - w - left, top, side - h - top))
    if side != cfg.img_size:
        x = F.interpolate(
            x,
            size=(cfg.img_size, cfg.img_size),
            mode=cfg.interpolation,
            align_corners=False,
            antialias=True,
        )
        if cfg.interpolation == "bicubic":  # bicubic overshoots; stay in the [0, 1] range
            x = x.clamp(0.0, 1.0)
    mean = torch.tensor(cfg.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def preprocess(pixels: np.ndarray, modality: str, cfg: PreprocessConfig) -> Tensor:
    """Turn one image or volume in modality units into model input.

    Parameters
    ----------
    pixels
        (H, W) grayscale, (H, W, 3|4) colour, (S, H, W) grayscale volume or (S, H, W, 3) colour
        volume, any numeric dtype (e.g. Hounsfield units, raw detector values, uint8 RGB).
    modality
        DICOM modality code (``"CR"``, ``"DX"``, ``"CT"``, ``"MR"``, ``"OP"``, ...); a 3-D array of
        ``CT``/``MR``/``PT``/``NM`` is always read as a slice stack.
    cfg
        The checkpoint's preprocessing configuration.

    Returns
    -------
    torch.Tensor
        float32 (3, S, S) for an image, (n_slices, 3, S, S) for a volume, S = ``cfg.img_size``.

    Raises
    ------
    InputError
        If the array has an unsupported shape or no finite value.
    """
    pixels = np.asarray(pixels)
    if not (np.issubdtype(pixels.dtype, np.number) or pixels.dtype == bool):
        raise InputError(f"Pixels must be numeric, got dtype {pixels.dtype}.")
    is_volume, is_colour = _layout(pixels, modality)
    if is_colour:
        pixels = pixels[..., :3]  # drop alpha
    unit = torch.from_numpy(scale_intensity(pixels, cfg))
    if not is_volume:
        unit = unit.unsqueeze(0)
    # -> (N, C, H, W)
    unit = unit.permute(0, 3, 1, 2) if is_colour else unit.unsqueeze(1).expand(-1, 3, -1, -1)
    out = to_model_input(unit.contiguous(), cfg)
    return out if is_volume else out[0]
