"""The objective the pixel optimizer minimises, for a batch of same-shape images or volumes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from deid.scrub.pixel_adversary import Adversary
from deid.scrub.pixel_metrics import ssim, token_similarity
from deid.scrub.pixel_settings import PixelSettings
from deid.scrub.pixel_transforms import random_transform
from reid_model.model import MaMI
from reid_model.preprocess import to_model_input


@dataclass(frozen=True)
class PatientContext:
    """What the rest of the release says about one image, one entry per re-identifier.

    Attributes
    ----------
    others
        (R, E) embeddings of the same patient's other images, or None.
    decoys
        (E,) embedding of a far identity (the patient least like this one), or None.
    centres
        (E,) mean embedding of the release's images of this modality, or None: what all
        patients share, which the identity term can subtract (``centred``).
    """

    others: tuple[Tensor | None, ...]
    decoys: tuple[Tensor | None, ...]
    centres: tuple[Tensor | None, ...]

    @classmethod
    def empty(cls, models: int) -> PatientContext:
        """Nothing known beside the image itself."""
        nothing = (None,) * models
        return cls(nothing, nothing, nothing)


@dataclass(frozen=True)
class IdentityTargets:
    """What each re-identifier's embedding of one image is pushed away from (and toward).

    Attributes
    ----------
    references
        One (R, E) tensor per re-identifier of L2-normalised embeddings: the original's first,
        then the same patient's other images in the release.
    decoys
        One (E,) L2-normalised embedding per re-identifier, or None: a far identity the
        perturbed image is pulled toward when ``lambda_decoy > 0``.
    centres
        One (E,) embedding per re-identifier, or None: subtracted from every embedding before
        the cosine similarities when ``settings.centred`` (None also where the image is the
        modality's mean, which would leave nothing to compare).
    """

    references: tuple[Tensor, ...]
    decoys: tuple[Tensor | None, ...]
    centres: tuple[Tensor | None, ...]


def three_channels(x: Tensor) -> Tensor:
    """(N, 1|3, H, W) -> (N, 3, H, W) (grey repeated, as the preprocessing does)."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def slice_subset(count: int, limit: int, generator: torch.Generator) -> Tensor:
    """Sorted indices of at most ``limit`` slices out of ``count`` (all when few enough)."""
    if count <= limit:
        return torch.arange(count)
    return torch.randperm(count, generator=generator)[:limit].sort().values


@contextlib.contextmanager
def middle_tokens(model: MaMI) -> Iterator[list[Tensor]]:
    """Collect, on each forward pass inside the block, the patch tokens after the middle
    transformer block of ``model`` ((N, T, D) per pass, prefix tokens dropped)."""
    blocks = model.backbone.blocks
    skip = model.backbone.num_prefix_tokens
    captured: list[Tensor] = []
    handle = blocks[max(len(blocks) // 2 - 1, 0)].register_forward_hook(
        lambda _module, _inputs, out: captured.append(out[:, skip:])
    )
    try:
        yield captured
    finally:
        handle.remove()


def identity_term(
    emb: Tensor, targets: list[IdentityTargets], index: int, settings: PixelSettings
) -> Tensor:
    """Sum over items of the mean similarity of re-identifier ``index``'s embeddings ``emb``
    (samples, items, E; L2-normalised) to each item's references, minus the decoy pull."""
    loss = torch.zeros((), device=emb.device)
    for item, target in enumerate(targets):
        own, refs, decoy = emb[:, item], target.references[index], target.decoys[index]
        centre = target.centres[index] if settings.centred else None
        if centre is not None:  # compare what tells patients apart, not what they share
            own, refs = F.normalize(own - centre, dim=-1), F.normalize(refs - centre, dim=-1)
            decoy = None if decoy is None else F.normalize(decoy - centre, dim=-1)
        loss = loss + (own @ refs.T).mean()
        if decoy is not None and settings.lambda_decoy > 0:
            loss = loss - settings.lambda_decoy * (own @ decoy).mean()
    return loss


def objective(
    seen: Tensor,
    seen0: Tensor,
    mfm0: list[Tensor],
    is_volume: bool,
    targets: list[IdentityTargets],
    adversary: Adversary,
    settings: PixelSettings,
    generator: torch.Generator,
) -> Tensor:
    """Sum over the batch of each image's objective (so each image's gradient is its own).

    Parameters
    ----------
    seen, seen0
        (B, S, C, H, W) perturbed and original images in [0, 1] (S = 1 for 2-D images).
    mfm0
        Per MFM, its tokens of the original, (B * S, h, w, D).
    is_volume
        Whether the items are volumes (pooled by the model) or single images.
    targets
        One :class:`IdentityTargets` per item.
    """
    b, s = seen.shape[:2]
    groups = settings.eot_samples
    flat = seen.flatten(0, 1)
    loss = torch.zeros((), device=seen.device)
    for i, (model, cfg) in enumerate(
        zip(adversary.reidentifiers, adversary.preprocess, strict=True)
    ):
        model_in = to_model_input(three_channels(flat), cfg)
        std = torch.tensor(cfg.std, device=seen.device)
        with_tokens = settings.lambda_tokens > 0
        twin = None
        if with_tokens:  # the original, seen through the same transforms
            twin = to_model_input(three_channels(seen0.flatten(0, 1)), cfg).repeat(groups, 1, 1, 1)
        # EOT: one transform per (sample, item); the slices of a volume share it
        views, twin_views = random_transform(
            model_in.repeat(groups, 1, 1, 1), groups * b, settings, std, generator, twin
        )

        def shaped(x: Tensor) -> Tensor:
            return x.unflatten(0, (groups * b, s)) if is_volume else x

        with middle_tokens(model) if with_tokens else contextlib.nullcontext([]) as tokens:
            out = model(shaped(views))
        emb = F.normalize(out["embedding"].float(), dim=-1).view(groups, b, -1)
        if twin_views is not None:
            with torch.no_grad(), middle_tokens(model) as tokens0:
                model(shaped(twin_views))
            # feature-level term: feature-disruption attacks report that mid-level features are
            # shared between models more than the final embedding is (not measured here)
            sim = F.cosine_similarity(tokens[0].float(), tokens0[0].float(), dim=-1)
            loss = loss + settings.lambda_tokens * sim.view(groups, b, -1).mean(dim=(0, 2)).sum()
        loss = loss + identity_term(emb, targets, i, settings)
    if adversary.mfms and settings.lambda_mfm > 0:
        # the MFM sees a random subset of a volume's slices per step (an unbiased estimate of
        # its mean over slices at a fraction of the cost)
        part = slice_subset(s, settings.quality_slices, generator).to(seen.device)
        picked = seen[:, part].flatten(0, 1)
        primary_in = to_model_input(three_channels(picked), adversary.primary)
        sims = [
            token_similarity(m(primary_in), f0.unflatten(0, (b, s))[:, part].flatten(0, 1))
            for m, f0 in zip(adversary.mfms, mfm0, strict=True)
        ]
        loss = loss + settings.lambda_mfm * b * (1.0 - torch.stack(sims).mean())
    if settings.lambda_vis > 0:
        # every slice of every item defends the floor (SSIM is cheap next to the model passes):
        # a batch mean, or a sampled subset of slices, lets the others fall below it
        per_slice = ssim(flat.float(), seen0.flatten(0, 1), per_image=True)
        loss = loss + settings.lambda_vis * torch.relu(settings.ssim_floor - per_slice).sum() / s
    return loss
