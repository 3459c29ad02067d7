"""The models the pixel optimizer plays against: one or more re-identifiers (an ensemble
transfers better to attackers it has not seen) and the frozen MFM(s) that keep the diagnosis."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from deid.errors import InputError
from reid_model.config import PreprocessConfig
from reid_model.mfm import FrozenMFM
from reid_model.model import MaMI


@dataclass
class Adversary:
    """Re-identifiers with their preprocessing, and frozen MFMs.

    Attributes
    ----------
    reidentifiers
        Models in eval mode; the first one's preprocessing defines the [0, 1] intensity domain
        in which epsilon is measured.
    preprocess
        One preprocessing config per re-identifier.
    mfms
        Frozen MFMs; each takes input preprocessed with ``preprocess[0]`` (see
        :class:`reid_model.mfm.FrozenMFM`). Empty: no MFM term.
    device
        Where the optimisation runs.
    bf16
        Run the models under bfloat16 autocast (CUDA; the perturbation itself stays float32).
    """

    reidentifiers: list[MaMI]
    preprocess: list[PreprocessConfig]
    mfms: list[FrozenMFM] = field(default_factory=list)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False

    def __post_init__(self) -> None:
        if not self.reidentifiers:
            raise InputError("The adversary needs at least one re-identifier checkpoint.")
        if len(self.preprocess) != len(self.reidentifiers):
            raise InputError(
                f"{len(self.reidentifiers)} re-identifiers but {len(self.preprocess)} "
                "preprocessing configs; give one per re-identifier."
            )
        for model in self.reidentifiers:
            model.to(self.device).eval().requires_grad_(False)
        for mfm in self.mfms:
            mfm.to(self.device).eval().requires_grad_(False)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision context the model passes run under."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    @property
    def primary(self) -> PreprocessConfig:
        """Preprocessing of the first re-identifier (defines the intensity domain)."""
        return self.preprocess[0]


def load_adversary(
    checkpoints: Sequence[str | Path],
    mfm_specs: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    bf16: bool = False,
) -> Adversary:
    """Load re-identifier checkpoints and frozen MFMs into an :class:`Adversary`.

    Parameters
    ----------
    checkpoints
        Re-identifier checkpoint folders (``reid_model.checkpoint`` format); the first one is the
        primary model.
    mfm_specs
        MFM specs for :func:`reid_model.mfm.load_mfm`; ``None`` uses the MFMs named in the
        primary checkpoint's config, ``[]`` disables the MFM term.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    bf16
        Run the models under bfloat16 autocast.

    Raises
    ------
    CheckpointError
        If a checkpoint or MFM cannot be loaded.
    InputError
        No checkpoint given, malformed MFM spec, or CUDA requested but not available.
    """
    from reid_model.checkpoint import load_checkpoint
    from reid_model.mfm import load_mfm

    target = torch.device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was requested but no GPU is visible; use --device cpu.")
    if not checkpoints:
        raise InputError("Give at least one re-identifier checkpoint folder.")
    models, configs = [], []
    for folder in checkpoints:
        model, cfg, _ = load_checkpoint(folder, device=target)
        models.append(model)
        configs.append(cfg.preprocess)
    specs = list(mfm_specs) if mfm_specs is not None else list(models[0].cfg.mfm)
    mfms = [load_mfm(spec, configs[0]) for spec in specs]
    return Adversary(models, configs, mfms, target, bf16)
