"""Knobs of the pixel identity-removal optimizer and the named strengths that preset them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from deid.errors import InputError

Strength = Literal["low", "medium", "high"]


@dataclass(frozen=True)
class PixelSettings:
    """How hard and how carefully the optimizer perturbs pixels.

    Attributes
    ----------
    epsilon
        L-infinity bound of the perturbation, as a fraction of the image's intensity range (the
        model's percentile scaling maps that range to [0, 1]).
    steps
        Gradient steps per image or volume.
    step_size
        Step of the signed gradient, as a multiple of ``epsilon / steps``; decays with a cosine.
    momentum
        Decay of the running direction of the signed steps (MI-FGSM, Dong et al. 2018): each
        step follows ``momentum * previous + gradient / mean|gradient|`` per image. 0 steps
        along the current gradient alone; about 1 averages out directions peculiar to the
        white-box model, which that paper found to transfer better to unseen models.
    random_start
        Half-width of the uniform random start of the perturbation, as a fraction of epsilon.
    lambda_mfm
        Weight of the frozen-MFM feature distance (keeps the diagnostic content).
    lambda_vis
        Weight of ``max(0, ssim_floor - SSIM)`` against the original.
    ssim_floor
        SSIM the visual term defends; above it the perturbation is free. 1.0 penalises every
        change (``1 - SSIM``), which pins small perturbations at zero: near the original the
        identity term's gradient vanishes while the SSIM term's does not.
    lambda_decoy
        Weight of the pull toward a far decoy identity (0: no decoy).
    centred
        Compare embeddings after subtracting the mean embedding of the release's images of the
        same modality (needs the release's references; without them it has no effect): the
        identity term then moves what tells this patient apart from the others rather than what
        every image of the modality shares. On phantom CT it halved an independent attacker's
        rank-1 at the same budget (benchmarks/RESULTS.md).
    lambda_tokens
        Weight of the cosine similarity between each re-identifier's patch tokens after its
        middle block for the perturbed image and for the original under the same transform
        (a feature-level term, as in feature-disruption attacks; 0: off). Costs one more
        forward pass per step.
    eot_samples
        Random transforms per step (expectation over transforms); 1 disables EOT's averaging.
    quality_slices
        Slices of a volume that the MFM term sees per step (a random subset; SSIM sees all).
    slice_chunk
        Volumes with more slices are optimised in runs of this many slices (memory bound).
    shift, rotation_deg, rescale, blur_sigma, noise_std
        Ranges of the EOT transforms: shift as a fraction of the side, rotation in degrees,
        relative scale change, Gaussian blur sigma in pixels of the model input, additive noise
        std in [0, 1] units.
    """

    epsilon: float = 0.03
    steps: int = 20
    step_size: float = 2.5
    momentum: float = 0.0
    random_start: float = 0.1
    lambda_mfm: float = 1.0
    lambda_vis: float = 1.0
    ssim_floor: float = 1.0
    lambda_decoy: float = 0.0
    lambda_tokens: float = 0.0
    centred: bool = True
    eot_samples: int = 4
    quality_slices: int = 4
    slice_chunk: int = 64
    shift: float = 0.03
    rotation_deg: float = 3.0
    rescale: float = 0.05
    blur_sigma: float = 0.8
    noise_std: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 < self.epsilon <= 1.0:
            raise InputError(f"epsilon must be in (0, 1], got {self.epsilon}.")
        if min(self.steps, self.eot_samples, self.quality_slices, self.slice_chunk) < 1:
            raise InputError(
                "steps, eot_samples, quality_slices and slice_chunk must be >= 1, got "
                f"{self.steps}, {self.eot_samples}, {self.quality_slices}, {self.slice_chunk}."
            )
        if not 0.0 < self.ssim_floor <= 1.0:
            raise InputError(f"ssim_floor must be in (0, 1], got {self.ssim_floor}.")
        if self.random_start > 1.0:
            raise InputError(f"random_start must be at most 1, got {self.random_start}.")
        negative = [
            f.name
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), float) and getattr(self, f.name) < 0
        ]
        if negative:
            raise InputError(f"{', '.join(negative)} must not be negative.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# (epsilon, steps, lambda_mfm, lambda_vis, ssim_floor) per strength; what each does against
# the shipped checkpoints is measured by benchmarks/scrub_frontier.py (benchmarks/RESULTS.md,
# and deid/scrub/frontier_measured.json for the scrub report)
STRENGTHS: dict[str, dict[str, float | int]] = {
    "low": {
        "epsilon": 0.015,
        "steps": 10,
        "lambda_mfm": 2.0,
        "lambda_vis": 2.0,
        "ssim_floor": 0.99,
    },
    "medium": {
        "epsilon": 0.03,
        "steps": 20,
        "lambda_mfm": 1.0,
        "lambda_vis": 1.0,
        "ssim_floor": 0.97,
    },
    "high": {
        "epsilon": 0.06,
        "steps": 40,
        "lambda_mfm": 0.5,
        "lambda_vis": 0.5,
        "ssim_floor": 0.93,
    },
}
DEFAULT_STRENGTH: Strength = "medium"


def settings_for(strength: str = DEFAULT_STRENGTH, **overrides: Any) -> PixelSettings:
    """Settings of a named strength, with any knob overridden (``None`` values are ignored).

    Raises
    ------
    InputError
        Unknown strength or knob, or a value out of range.
    """
    if strength not in STRENGTHS:
        raise InputError(f"Unknown strength {strength!r}; choose from {', '.join(STRENGTHS)}.")
    known = {f.name for f in dataclasses.fields(PixelSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(f"Unknown pixel setting(s) {', '.join(unknown)}; known: {sorted(known)}.")
    values = dict(STRENGTHS[strength])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return PixelSettings(**values)  # type: ignore[arg-type]


def _boolean(text: str) -> bool:
    words = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if text.strip().lower() not in words:
        raise ValueError(text)
    return words[text.strip().lower()]


_KINDS: dict[str, tuple[Any, str]] = {
    "int": (int, "an integer"),
    "bool": (_boolean, "true or false"),
}


def parse_overrides(pairs: Sequence[str]) -> dict[str, float | int | bool]:
    """``["lambda_mfm=2", "steps=30"]`` -> ``{"lambda_mfm": 2.0, "steps": 30}``, each value
    converted to its :class:`PixelSettings` field's type.

    Raises
    ------
    InputError
        A pair without ``=``, an unknown knob, or a value of the wrong type.
    """
    types = {f.name: f.type for f in dataclasses.fields(PixelSettings)}
    overrides: dict[str, float | int | bool] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise InputError(f"Pixel setting {pair!r} is not NAME=VALUE, e.g. lambda_mfm=2.")
        if name not in types:
            raise InputError(f"Unknown pixel setting {name!r}; known: {', '.join(types)}.")
        kind, wanted = _KINDS.get(str(types[name]), (float, "a number"))
        try:
            overrides[name] = kind(text)
        except ValueError as exc:
            raise InputError(f"Pixel setting {name} needs {wanted}, got {text!r}.") from exc
    return overrides
