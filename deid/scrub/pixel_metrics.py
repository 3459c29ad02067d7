"""Image-quality and feature-similarity measures of a scrub, in the [0, 1] intensity domain."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.filters import filter2d_separable, get_gaussian_kernel1d
from torch import Tensor

from deid.errors import InputError


def _window(height: int, width: int) -> int:
    """SSIM's usual 11-pixel window, shrunk (odd) for tiny images."""
    side = min(11, height, width)
    return side if side % 2 else side - 1


def ssim(x: Tensor, y: Tensor, per_image: bool = False) -> Tensor:
    """Mean SSIM of two (N, C, H, W) batches in [0, 1] (Gaussian 11x11 window, sigma 1.5,
    reflected borders), differentiable; with ``per_image`` the (N,) mean of each image instead.

    The same map as ``kornia.metrics.ssim``, but the five local moments are filtered in one
    separable call instead of five, which is cheaper forward and backward; the optimizer
    evaluates it on every slice of a volume at every step.

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
    x, y = x.float(), y.float()
    kernel = get_gaussian_kernel1d(window, 1.5, device=x.device, dtype=x.dtype)
    moments = filter2d_separable(
        torch.cat([x, y, x * x, y * y, x * y], dim=1), kernel, kernel, border_type="reflect"
    )
    mu_x, mu_y, xx, yy, xy = moments.split(x.shape[1], dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    numerator = (2.0 * mu_xy + c1) * (2.0 * (xy - mu_xy) + c2)
    denominator = (mu_xx + mu_yy + c1) * ((xx - mu_xx) + (yy - mu_yy) + c2)
    values = numerator / (denominator + 1e-12)
    return values.flatten(1).mean(dim=1) if per_image else values.mean()


def psnr(x: Tensor, y: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for values in [0, 1]; ``inf`` when equal."""
    mse = float(F.mse_loss(x.double(), y.double()))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def token_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Mean cosine similarity of corresponding feature vectors (last dim) of ``a`` and ``b``."""
    return F.cosine_similarity(a.flatten(0, -2).float(), b.flatten(0, -2).float(), dim=-1).mean()
