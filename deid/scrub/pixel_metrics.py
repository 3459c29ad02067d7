"""Image-quality and feature-similarity measures of a scrub, in the [0, 1] intensity domain."""

from __future__ import annotations

import math

import torch.nn.functional as F
from kornia.metrics import ssim as kornia_ssim
from torch import Tensor

from deid.errors import InputError


def _window(height: int, width: int) -> int:
    """SSIM's usual 11-pixel window, shrunk (odd) for tiny images."""
    side = min(11, height, width)
    return side if side % 2 else side - 1


def ssim(x: Tensor, y: Tensor, per_image: bool = False) -> Tensor:
    """Mean SSIM of two (N, C, H, W) batches in [0, 1] (Gaussian 11x11 window), differentiable;
    with ``per_image`` the (N,) mean of each image instead.

    Raises
    ------
    InputError
        If the shapes differ or an image is smaller than 3 x 3.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise InputError(f"ssim expects two equal (N, C, H, W) shapes, got {x.shape}, {y.shape}.")
    window = _window(*x.shape[-2:])
    if window < 3:
        raise InputError(f"ssim needs images of at least 3 x 3 pixels, got {tuple(x.shape)}.")
    values = kornia_ssim(x, y, window, max_val=1.0)
    return values.flatten(1).mean(dim=1) if per_image else values.mean()


def psnr(x: Tensor, y: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for values in [0, 1]; ``inf`` when equal."""
    mse = float(F.mse_loss(x.double(), y.double()))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def token_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Mean cosine similarity of corresponding feature vectors (last dim) of ``a`` and ``b``."""
    return F.cosine_similarity(a.flatten(0, -2).float(), b.flatten(0, -2).float(), dim=-1).mean()
