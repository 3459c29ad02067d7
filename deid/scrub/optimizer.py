"""Identity removal in pixels: a bounded perturbation that pushes the re-identifier's embedding of
an image away from its patient while a frozen MFM and SSIM keep what a reader needs.

For each image or volume, with ``x`` its intensities scaled to [0, 1] by the primary model's
percentile scaling, find ``delta`` with ``|delta|_inf <= epsilon`` minimising

    identity(x + delta) + lambda_mfm * (1 - cos(MFM(x + delta), MFM(x)))
                        + lambda_vis * max(0, ssim_floor - SSIM(x + delta, x))

where ``identity`` is the mean cosine similarity of each re-identifier's embedding of the
(randomly transformed) perturbed image to the embeddings of the original and of the patient's
other images (optionally after subtracting the release's mean embedding of the modality),
minus ``lambda_decoy`` times the similarity to a far decoy identity, plus ``lambda_tokens`` times
the similarity of the re-identifier's middle-block tokens to the original's. Signed
gradient steps (optionally along a momentum direction) with a cosine-decayed step size from a
small random start, projected onto the L-infinity ball; images of one shape can share the model
passes (``scrub_batch``). The result is mapped back to modality units, snapped to the stored
grid and measured again as the scorer would see the written file.
"""

from __future__ import annotations

import dataclasses
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
from deid.scrub.pixel_objective import IdentityTargets, PatientContext, objective, three_channels
from deid.scrub.pixel_settings import PixelSettings
from reid_model.config import PreprocessConfig
from reid_model.preprocess import _layout, preprocess, to_model_input

PSNR_CAP = 100.0  # dB recorded for an unchanged image
_PERCENTILE_SAMPLE = 1 << 22


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
    sample = values[finite]
    if sample.size > _PERCENTILE_SAMPLE:  # large volumes: evenly strided values suffice
        sample = sample[:: sample.size // _PERCENTILE_SAMPLE + 1]
    low, high = (float(v) for v in np.percentile(sample, [cfg.low_pct, cfg.high_pct]))
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
    context: PatientContext | None = None,
) -> IdentityTargets:
    """Identity targets of one image: its own embedding per model, then the patient's other
    images, decoy and modality centre from ``context``."""
    n = len(adversary.reidentifiers)
    context = context or PatientContext.empty(n)
    if not len(context.others) == len(context.decoys) == len(context.centres) == n:
        raise InputError(f"The patient context needs one entry per re-identifier ({n}).")

    def on_device(x: Tensor | None, normalise: bool = True) -> Tensor | None:
        if x is None:
            return None
        x = x.to(adversary.device).float()
        return F.normalize(x, dim=-1) if normalise else x

    references, centres = [], []
    for i in range(n):
        own = embed_pixels(pixels, modality, adversary, i).unsqueeze(0)
        centre = on_device(context.centres[i], normalise=False)
        if centre is not None and float((own[0] - centre).norm()) < 1e-4:
            centre = None  # the image is the modality's mean: centring would leave nothing
        centres.append(centre)
        extra = on_device(context.others[i])
        if extra is not None and extra.numel():
            own = torch.cat([own, extra], dim=0)
        references.append(own)
    return IdentityTargets(
        tuple(references), tuple(on_device(d) for d in context.decoys), tuple(centres)
    )


def optimise_delta(
    units: Sequence[UnitImage],
    targets: Sequence[IdentityTargets],
    adversary: Adversary,
    settings: PixelSettings,
    generator: torch.Generator,
) -> list[Tensor]:
    """Find the perturbations of a batch of same-shape images (or one volume) in [0, 1].

    Parameters
    ----------
    units
        Images as returned by :func:`to_unit` (primary model's preprocessing), all of one shape
        and layout; a batch of images shares the model passes (GPU throughput).
    targets
        Per image: identity references and decoys, one entry per re-identifier.
    adversary
        Re-identifiers and MFMs.
    settings
        Budget, steps, weights and EOT ranges.
    generator
        CPU generator for the random transforms (results depend on the batch's composition).

    Returns
    -------
    list[Tensor]
        Per image, ``delta`` (S, C, H, W) on ``adversary.device``, ``|delta| <= epsilon``.

    Raises
    ------
    InputError
        Empty batch, or images of different shapes or layouts.
    """
    if not units or len(units) != len(targets):
        raise InputError(f"optimise_delta needs matching images and targets, got {len(units)}.")
    shapes = {(tuple(u.stack.shape), u.is_volume) for u in units}
    if len(shapes) != 1:
        raise InputError(f"optimise_delta batches images of one shape only, got {sorted(shapes)}.")
    first, chunk = units[0], settings.slice_chunk
    if first.is_volume and first.stack.shape[0] > chunk:
        # memory stays bounded: each run of slices is optimised as a sub-volume whose pooled
        # embedding is pushed away from the whole volume's references
        runs = [
            optimise_delta(
                [dataclasses.replace(u, stack=u.stack[start : start + chunk]) for u in units],
                targets,
                adversary,
                settings,
                generator,
            )
            for start in range(0, first.stack.shape[0], chunk)
        ]
        return [torch.cat([run[i] for run in runs]) for i in range(len(units))]
    device = adversary.device
    x0 = torch.stack([u.stack for u in units]).to(device)  # (B, S, C, H, W)
    seen0 = x0.clamp(0.0, 1.0)
    with torch.no_grad(), adversary.autocast():
        primary0 = to_model_input(three_channels(seen0.flatten(0, 1)), adversary.primary)
        mfm0 = [mfm(primary0).float() for mfm in adversary.mfms]
    # a random start: at delta = 0 the similarity to the original sits at its maximum, where
    # its gradient vanishes
    start = (torch.rand(x0.shape, generator=generator) * 2.0 - 1.0) * settings.random_start
    delta = (start * settings.epsilon).to(device).requires_grad_(True)
    base_step = settings.step_size * settings.epsilon / settings.steps
    direction = torch.zeros_like(delta)
    for step in range(settings.steps):
        seen = (x0 + delta).clamp(0.0, 1.0)
        with adversary.autocast():
            loss = objective(
                seen, seen0, mfm0, first.is_volume, list(targets), adversary, settings, generator
            )
        (grad,) = torch.autograd.grad(loss, delta)
        step_size = base_step * 0.5 * (1.0 + math.cos(math.pi * step / settings.steps))
        with torch.no_grad():
            # per image, the gradient's scale is divided out before it joins the running
            # direction (with momentum 0 this is the plain signed gradient)
            scale = grad.abs().flatten(1).mean(1).clamp_min(1e-12)
            direction = settings.momentum * direction + grad / scale.view(-1, 1, 1, 1, 1)
            delta -= step_size * direction.sign()
            delta.clamp_(-settings.epsilon, settings.epsilon)
    return list(delta.detach())


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
        in0 = to_model_input(three_channels(seen0), adversary.primary)
        in1 = to_model_input(three_channels(seen1), adversary.primary)
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
    context: PatientContext | None = None,
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
    context
        What the release says about the patient (other images, decoy, modality centre).

    Returns
    -------
    tuple[np.ndarray, PixelMetrics]
        New pixels (same shape, float32, modality units, on the stored grid when quantised) and
        their metrics.
    """
    return scrub_batch(
        [pixels],
        modality,
        adversary,
        settings,
        generator,
        quantisers=None if quantiser is None else [quantiser],
        contexts=None if context is None else [context],
    )[0]


def scrub_batch(
    batch: Sequence[np.ndarray],
    modality: str,
    adversary: Adversary,
    settings: PixelSettings,
    generator: torch.Generator,
    *,
    quantisers: Sequence[Callable[[np.ndarray], np.ndarray] | None] | None = None,
    contexts: Sequence[PatientContext | None] | None = None,
) -> list[tuple[np.ndarray, PixelMetrics]]:
    """:func:`scrub_pixels` for several images of one shape and modality at once.

    The images share every model pass (the way to fill a GPU); each keeps its own gradient,
    targets and metrics. ``quantisers`` and ``contexts`` hold one entry per image.
    Constant images are returned unchanged. ``seconds`` in the metrics is the batch's time
    divided by its size.

    Raises
    ------
    InputError
        Images of different shapes, or per-image lists of the wrong length.
    """
    started = time.perf_counter()
    n = len(batch)
    for name, given in (("quantisers", quantisers), ("contexts", contexts)):
        if given is not None and len(given) != n:
            raise InputError(f"scrub_batch: {name} has {len(given)} entries for {n} images.")
    originals = [np.asarray(p, dtype=np.float32) for p in batch]
    units = [to_unit(p, modality, adversary.primary) for p in originals]
    targets = [
        original_targets(p, modality, adversary, contexts[i] if contexts else None)
        for i, p in enumerate(originals)
    ]
    active = [i for i, u in enumerate(units) if u.scale > 0]  # constant: no identity to remove
    news = [p.copy() for p in originals]
    if active:
        deltas = optimise_delta(
            [units[i] for i in active], [targets[i] for i in active], adversary, settings, generator
        )
        for i, delta in zip(active, deltas, strict=True):
            new = from_unit(units[i], units[i].stack.to(delta.device) + delta)
            if units[i].is_colour and originals[i].shape[-1] == 4:  # alpha is kept as it was
                new = np.concatenate([new, originals[i][..., 3:]], axis=-1)
            news[i] = new
    seconds = (time.perf_counter() - started) / max(n, 1)
    results = []
    for i, (original, new) in enumerate(zip(originals, news, strict=True)):
        quantiser = quantisers[i] if quantisers else None
        written = np.asarray(quantiser(new) if quantiser is not None else new, dtype=np.float32)
        metrics = measure(original, written, new, modality, adversary, targets[i], seconds)
        results.append((written, metrics))
    return results
