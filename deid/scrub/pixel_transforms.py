"""Small random transforms for the expectation over transforms (EOT): the perturbation is
optimised through them so that its effect survives routine processing (a shift, a slight
rotation or zoom, a blur, noise) of the released image."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import Tensor

from deid.errors import InputError
from deid.scrub.pixel_settings import PixelSettings


def _uniform(n: int, half_width: float, generator: torch.Generator) -> Tensor:
    return (torch.rand(n, generator=generator) * 2.0 - 1.0) * half_width


def random_transform(
    x: Tensor,
    groups: int,
    settings: PixelSettings,
    std: Tensor,
    generator: torch.Generator,
    twin: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Apply one random transform per group of consecutive images of ``x``.

    Parameters
    ----------
    x
        (N, C, H, W) normalised model input; N = ``groups`` x images per group (the slices of one
        volume share their transform).
    groups
        Number of independent transforms.
    settings
        Transform ranges (``shift``, ``rotation_deg``, ``rescale``, ``blur_sigma``,
        ``noise_std``).
    std
        (C,) normalisation std of the model input, to express noise in [0, 1] units.
    generator
        CPU generator drawing every random parameter (results do not depend on the device).
    twin
        Optional tensor shaped like ``x`` (e.g. the original image) that gets exactly the same
        transforms and noise.

    Returns
    -------
    tuple[Tensor, Tensor | None]
        Transformed ``x`` (N, C, H, W), differentiable with respect to ``x``, and the transformed
        ``twin`` (None without one).
    """
    if x.dim() != 4 or x.shape[0] % groups:
        raise InputError(
            f"random_transform expects (N, C, H, W) with N a multiple of {groups}, "
            f"got {tuple(x.shape)}."
        )
    if twin is not None and twin.shape != x.shape:
        raise InputError(f"random_transform: twin {tuple(twin.shape)} is not {tuple(x.shape)}.")
    per_group = x.shape[0] // groups
    device, dtype = x.device, x.dtype
    angle = _uniform(groups, math.radians(settings.rotation_deg), generator)
    scale = 1.0 + _uniform(groups, settings.rescale, generator)
    shift = _uniform(2 * groups, 2.0 * settings.shift, generator).view(groups, 2)
    sigma = torch.rand(groups, generator=generator) * settings.blur_sigma
    noise = torch.randn(x.shape, generator=generator).to(device=device, dtype=dtype)

    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    theta = theta.repeat_interleave(per_group, 0).to(device=device, dtype=dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    sigmas = sigma.clamp_min(1e-3).repeat_interleave(per_group).to(device=device, dtype=dtype)
    kernel = 2 * math.ceil(2.0 * settings.blur_sigma) + 1

    def apply(images: Tensor) -> Tensor:
        out = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        if settings.blur_sigma > 0:
            out = gaussian_blur2d(out, (kernel, kernel), torch.stack([sigmas, sigmas], 1))
        if settings.noise_std > 0:
            out = out + noise * (settings.noise_std / std.view(1, -1, 1, 1))
        return out

    return apply(x), (None if twin is None else apply(twin))
