"""Identity removal in pixels: a bounded perturbation that pushes the re-identifier's embedding of
an image away from its patient while a frozen MFM and SSIM keep what a reader needs.

For each image or volume, with ``x`` its intensities scaled to [0, 1] by the primary model's
percentile scaling, find ``delta`` with ``|delta|_inf <= epsilon`` minimising

    identity(x + delta) + lambda_mfm * (1 - cos MFM(x + delta), MFM(x)) + lambda_vis * (1 - SSIM)

where ``identity`` is the mean cosine similarity of each re-identifier's embedding of the
(randomly transformed) perturbed image to the embeddings of the original and of the patient's
other images, minus ``lambda_decoy`` times the similarity to a far decoy identity. Signed
gradient steps with a cosine-decayed step size, projected onto the L-infinity ball. The result
is mapped back to modality units, snapped to the stored grid and measured again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from deid.errors import InputError
from deid.scrub.pixel_adversary import Adversary
from deid.scrub.pixel_metrics import psnr, ssim, token_similarity
from deid.scrub.pixel_settings import PixelSettings
from deid.scrub.pixel_transforms import random_transform
from reid_model.config import PreprocessConfig
from reid_model.preprocess import _layout, preprocess, to_model_input

PSNR_CAP = 100.0  # dB recorded for an unchanged image


@dataclass(frozen=True)
class UnitImage:
    """An image or volume as a stack in the [0, 1] intensity domain (not clipped).

    Attributes
    ----------
    stack
        (S, C, H, W) float32: S = 1 for an image, C = 1 grey or 3 colour. Values outside [0, 1]
        lie beyond the scaling percentiles (the model sees them clipped).
    low, scale
        ``pixels = low + scale * unit``; ``scale`` is 0 for a constant image.
    is_volume, is_colour
        Layout of the source array.
    """

    stack: Tensor
    low: float
    scale: float
    is_volume: bool
    is_colour: bool


def to_unit(pixels: np.ndarray, modality: str, cfg: PreprocessConfig) -> UnitImage:
    """Scale modality-unit ``pixels`` like :func:`reid_model.preprocess.scale_intensity`, unclipped.

    Raises
    ------
    InputError
        Unsupported shape, or no finite value.
    """
    values = np.asarray(pixels, dtype=np.float32)
    is_volume, is_colour = _layout(values, modality)
    if is_colour:
        values = values[..., :3]
    finite = np.isfinite(values)
    if not finite.any():
        raise InputError("The image holds no finite pixel value; it cannot be scrubbed.")
    low, high = (float(v) for v in np.percentile(values[finite], [cfg.low_pct, cfg.high_pct]))
    scale = high - low
    unit = (np.where(finite, values, low) - low) / scale if scale > 0 else np.zeros_like(values)
    stack = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))
    stack = stack if is_volume else stack.unsqueeze(0)
    stack = stack.permute(0, 3, 1, 2) if is_colour else stack.unsqueeze(1)
    return UnitImage(stack.contiguous(), low, scale, is_volume, is_colour)


def from_unit(unit: UnitImage, stack: Tensor) -> np.ndarray:
    """Inverse of :func:`to_unit`: (S, C, H, W) unit values -> modality units, source layout."""
    values = stack.detach().float().cpu()
    values = values.permute(0, 2, 3, 1) if unit.is_colour else values[:, 0]
    array = values.numpy().astype(np.float64) * unit.scale + unit.low
    return (array if unit.is_volume else array[0]).astype(np.float32)


@dataclass(frozen=True)
class IdentityTargets:
    """What each re-identifier's embedding is pushed away from (and optionally toward).

    Attributes
    ----------
    references
        One (R, E) tensor per re-identifier of L2-normalised embeddings: the original's first,
        then the same patient's other images in the release.
    decoys
        One (E,) L2-normalised embedding per re-identifier, or None: a far identity the
        perturbed image is pulled toward when ``lambda_decoy > 0``.
    """

    references: tuple[Tensor, ...]
    decoys: tuple[Tensor | None, ...]


def _three_channels(x: Tensor) -> Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _embed_batch(model: torch.nn.Module, x: Tensor, is_volume: bool, groups: int) -> Tensor:
    """Model input (groups * S, 3, s, s) -> L2-normalised embeddings (groups, E), with grad."""
    batch = x.unflatten(0, (groups, -1)) if is_volume else x
    return F.normalize(model(batch)["embedding"].float(), dim=-1)


@torch.no_grad()
def embed_pixels(pixels: np.ndarray, modality: str, adversary: Adversary, index: int = 0) -> Tensor:
    """The embedding (E,) that re-identifier ``index`` gives ``pixels``, as the scorer computes it
    (full preprocessing, percentiles estimated on these pixels)."""
    x = preprocess(pixels, modality, adversary.preprocess[index]).to(adversary.device)
    return adversary.reidentifiers[index].embed(x.unsqueeze(0))[0]


def original_targets(
    pixels: np.ndarray,
    modality: str,
    adversary: Adversary,
    others: Sequence[Tensor | None] | None = None,
    decoys: Sequence[Tensor | None] | None = None,
) -> IdentityTargets:
    """Identity targets of one image: its own embedding per model, then ``others[i]`` (R_i, E)."""
    references = []
    for i in range(len(adversary.reidentifiers)):
        own = embed_pixels(pixels, modality, adversary, i).unsqueeze(0)
        extra = others[i] if others is not None else None
        if extra is not None and extra.numel():
            own = torch.cat([own, F.normalize(extra.to(own), dim=-1)], dim=0)
        references.append(own)
    decoy_list = tuple(
        None if d is None else F.normalize(d.to(adversary.device).float(), dim=-1)
        for d in (decoys or [None] * len(references))
    )
    return IdentityTargets(tuple(references), decoy_list)


def optimise_delta(
    unit: UnitImage,
    targets: IdentityTargets,
    adversary: Adversary,
    settings: PixelSettings,
    generator: torch.Generator,
) -> Tensor:
    """Find the perturbation of one image or volume in the [0, 1] domain.

    Parameters
    ----------
    unit
        The image as returned by :func:`to_unit` (with the primary model's preprocessing).
    targets
        Identity references and decoys, one entry per re-identifier.
    adversary
        Re-identifiers and MFMs.
    settings
        Budget, steps, weights and EOT ranges.
    generator
        CPU generator for the random transforms.

    Returns
    -------
    Tensor
        ``delta`` (S, C, H, W) on ``adversary.device`` with ``|delta| <= settings.epsilon``.
    """
    device = adversary.device
    x0 = unit.stack.to(device)
    seen0 = x0.clamp(0.0, 1.0)
    with torch.no_grad(), adversary.autocast():
        primary0 = to_model_input(_three_channels(seen0), adversary.primary)
        mfm0 = [mfm(primary0).float() for mfm in adversary.mfms]
    delta = torch.zeros_like(x0, requires_grad=True)
    base_step = settings.step_size * settings.epsilon / settings.steps
    for step in range(settings.steps):
        seen = (x0 + delta).clamp(0.0, 1.0)
        with adversary.autocast():
            loss = _loss(seen, seen0, mfm0, unit.is_volume, targets, adversary, settings, generator)
        (grad,) = torch.autograd.grad(loss, delta)
        step_size = base_step * 0.5 * (1.0 + math.cos(math.pi * step / settings.steps))
        with torch.no_grad():
            delta -= step_size * grad.sign()
            delta.clamp_(-settings.epsilon, settings.epsilon)
    return delta.detach()


def _loss(
    seen: Tensor,
    seen0: Tensor,
    mfm0: list[Tensor],
    is_volume: bool,
    targets: IdentityTargets,
    adversary: Adversary,
    settings: PixelSettings,
    generator: torch.Generator,
) -> Tensor:
    """The objective for the perturbed image ``seen`` (S, C, H, W) in [0, 1]."""
    groups = settings.eot_samples
    loss = torch.zeros((), device=seen.device)
    for model, cfg, refs, decoy in zip(
        adversary.reidentifiers,
        adversary.preprocess,
        targets.references,
        targets.decoys,
        strict=True,
    ):
        model_in = to_model_input(_three_channels(seen), cfg)
        std = torch.tensor(cfg.std, device=seen.device)
        views = random_transform(model_in.repeat(groups, 1, 1, 1), groups, settings, std, generator)
        emb = _embed_batch(model, views, is_volume, groups)
        loss = loss + (emb @ refs.T).mean()
        if decoy is not None and settings.lambda_decoy > 0:
            loss = loss - settings.lambda_decoy * (emb @ decoy).mean()
    # the quality terms see a random subset of a volume's slices per step (an unbiased
    # estimate of their mean over slices at a fraction of the cost)
    part = _slice_subset(seen.shape[0], settings.quality_slices, generator).to(seen.device)
    if adversary.mfms and settings.lambda_mfm > 0:
        primary_in = to_model_input(_three_channels(seen[part]), adversary.primary)
        sims = [
            token_similarity(m(primary_in), f0[part])
            for m, f0 in zip(adversary.mfms, mfm0, strict=True)
        ]
        loss = loss + settings.lambda_mfm * (1.0 - torch.stack(sims).mean())
    if settings.lambda_vis > 0:
        loss = loss + settings.lambda_vis * (1.0 - ssim(seen[part].float(), seen0[part]))
    return loss


def _slice_subset(count: int, limit: int, generator: torch.Generator) -> Tensor:
    """Sorted indices of at most ``limit`` slices out of ``count`` (all when few enough)."""
    if count <= limit:
        return torch.arange(count)
    return torch.randperm(count, generator=generator)[:limit].sort().values


@dataclass(frozen=True)
class PixelMetrics:
    """What one scrub did to one image or volume (JSON-able via ``to_dict``).

    Attributes
    ----------
    reid_similarity_before
        Mean cosine similarity (primary re-identifier) of the original to its identity
        references (itself and the patient's other images); 1.0 without other images.
    reid_similarity_after
        The same for the written (quantised) pixels, measured as the scorer would.
    reid_similarity_float
        Similarity to the original embedding before quantisation (float pixels).
    reid_similarity_quantised
        Similarity to the original embedding after quantisation.
    mfm_similarity
        Mean cosine similarity of the MFM patch features, quantised vs original (None: no MFM).
    ssim, psnr
        In the [0, 1] domain of the original's scaling (clipped), quantised vs original; PSNR
        is capped at ``PSNR_CAP`` dB (identical images), so the manifest stays valid JSON.
    linf
        Largest absolute change in modality units; ``linf_unit`` the same as a fraction of the
        intensity range (bounded by epsilon up to half a stored step).
    seconds
        Wall time of the optimisation and measurement.
    """

    reid_similarity_before: float
    reid_similarity_after: float
    reid_similarity_float: float
    reid_similarity_quantised: float
    mfm_similarity: float | None
    ssim: float
    psnr: float
    linf: float
    linf_unit: float
    seconds: float

    def to_dict(self) -> dict[str, float | None]:
        return {k: (None if v is None else round(float(v), 6)) for k, v in self.__dict__.items()}


def _mean_similarity(emb: Tensor, refs: Tensor) -> float:
    return float((refs @ emb).mean())


@torch.no_grad()
def measure(
    original: np.ndarray,
    written: np.ndarray,
    float_pixels: np.ndarray,
    modality: str,
    adversary: Adversary,
    targets: IdentityTargets,
    seconds: float,
) -> PixelMetrics:
    """Compare the written pixels with the original (see :class:`PixelMetrics`)."""
    refs = targets.references[0]
    own = refs[0]
    after = embed_pixels(written, modality, adversary)
    floating = embed_pixels(float_pixels, modality, adversary)
    unit0 = to_unit(original, modality, adversary.primary)
    seen0 = unit0.stack.clamp(0, 1).to(adversary.device)
    # the written image on the original's scale, so SSIM/PSNR see only the change
    moved = (np.asarray(written, np.float64) - unit0.low) / (unit0.scale or 1.0)
    seen1 = to_unit_like(unit0, moved).clamp(0, 1).to(adversary.device)
    mfm_similarity = None
    if adversary.mfms:
        in0 = to_model_input(_three_channels(seen0), adversary.primary)
        in1 = to_model_input(_three_channels(seen1), adversary.primary)
        sims = [float(token_similarity(m(in1), m(in0))) for m in adversary.mfms]
        mfm_similarity = float(np.mean(sims))
    change = np.abs(np.asarray(written, np.float64) - np.asarray(original, np.float64))
    linf = float(change.max()) if change.size else 0.0
    return PixelMetrics(
        reid_similarity_before=_mean_similarity(own, refs),
        reid_similarity_after=_mean_similarity(after, refs),
        reid_similarity_float=float(floating @ own),
        reid_similarity_quantised=float(after @ own),
        mfm_similarity=mfm_similarity,
        ssim=float(ssim(seen1, seen0)) if min(seen0.shape[-2:]) >= 3 else 1.0,
        psnr=min(psnr(seen1, seen0), PSNR_CAP),
        linf=linf,
        linf_unit=linf / unit0.scale if unit0.scale > 0 else 0.0,
        seconds=seconds,
    )


def to_unit_like(unit: UnitImage, values: np.ndarray) -> Tensor:
    """Arrange ``values`` (source layout, already in unit scale) as ``unit``'s (S, C, H, W)."""
    stack = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    if unit.is_colour:
        stack = stack[..., :3]
    stack = stack if unit.is_volume else stack.unsqueeze(0)
    return stack.permute(0, 3, 1, 2) if unit.is_colour else stack.unsqueeze(1)


def scrub_pixels(
    pixels: np.ndarray,
    modality: str,
    adversary: Adversary,
    settings: PixelSettings,
    generator: torch.Generator,
    *,
    quantiser: Callable[[np.ndarray], np.ndarray] | None = None,
    others: Sequence[Tensor | None] | None = None,
    decoys: Sequence[Tensor | None] | None = None,
) -> tuple[np.ndarray, PixelMetrics]:
    """Remove identity from one image or volume given in modality units.

    Parameters
    ----------
    pixels
        (H, W), (H, W, 3), (S, H, W) or (S, H, W, 3) in modality units.
    modality
        DICOM modality code (decides whether a 3-D array is a volume).
    adversary
        Re-identifiers and MFMs.
    settings
        Optimiser settings (see :func:`deid.scrub.pixel_settings.settings_for`).
    generator
        CPU torch generator (EOT draws); same seed, same output.
    quantiser
        ``f(float_pixels) -> pixels on the stored grid`` (e.g. ``functools.partial(quantise,
        record)``); None keeps float values.
    others, decoys
        Per re-identifier: embeddings (R, E) of the patient's other images, and a decoy (E,).

    Returns
    -------
    tuple[np.ndarray, PixelMetrics]
        New pixels (same shape, float32, modality units, on the stored grid when quantised) and
        their metrics.
    """
    started = time.perf_counter()
    original = np.asarray(pixels, dtype=np.float32)
    unit = to_unit(original, modality, adversary.primary)
    targets = original_targets(original, modality, adversary, others, decoys)
    if unit.scale > 0:
        delta = optimise_delta(unit, targets, adversary, settings, generator)
        new = from_unit(unit, unit.stack.to(delta.device) + delta)
        if unit.is_colour and original.shape[-1] == 4:  # alpha is kept as it was
            new = np.concatenate([new, original[..., 3:]], axis=-1)
    else:  # a constant image carries no identity to remove
        new = original.copy()
    written = quantiser(new) if quantiser is not None else new
    metrics = measure(
        original, written, new, modality, adversary, targets, time.perf_counter() - started
    )
    return np.asarray(written, dtype=np.float32), metrics
