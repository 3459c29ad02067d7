"""Frozen configuration dataclasses of the re-identifier, one per concern, and the named presets.

Every class round-trips through plain JSON types: ``to_dict`` writes lists where the class holds
tuples, ``from_dict`` accepts them back and rejects keys it does not know, so a typo in a preset
or a checkpoint from another code version fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from deid.errors import InputError

PRESET_DIR = Path(__file__).resolve().parent / "presets"

# CLIP's normalisation: the paper preset starts from CLIP weights, so inputs use CLIP statistics.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_C = TypeVar("_C")


def from_plain_dict(
    cls: type[_C], data: dict[str, Any], nested: dict[str, type] | None = None
) -> _C:
    """Build dataclass ``cls`` from ``data``; unknown keys raise, lists become tuples."""
    if not isinstance(data, dict):
        raise InputError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}.")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(
            f"{cls.__name__}: unknown key(s) {unknown}; allowed keys are {sorted(names)}. "
            "Fix the spelling or remove them."
        )
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if nested and key in nested:
            value = nested[key].from_dict(value)  # type: ignore[attr-defined]
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # missing required field
        raise InputError(f"{cls.__name__}: {exc}. Add the missing key(s).") from exc


def to_plain_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = to_plain_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _check_choice(owner: str, name: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise InputError(f"{owner}.{name} = {value!r} is not one of {list(choices)}.")


def _check_positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise InputError(f"{owner}.{name} must be > 0, got {value!r}.")


@dataclass(frozen=True)
class BackboneConfig:
    """ViT backbone (timm ``VisionTransformer``, CLIP layout: class token, pre-norm)."""

    img_size: int = 224  # input side in pixels (square)
    patch_size: int = 16  # side of one patch token
    embed_dim: int = 768  # token width D
    depth: int = 12  # number of transformer blocks
    num_heads: int = 12
    mlp_ratio: float = 4.0  # FFN hidden width = mlp_ratio * D
    init: str = "random"  # "random" or a local OpenAI/open_clip checkpoint file to start from
    act: Literal["gelu", "quick_gelu"] = "gelu"  # OpenAI CLIP weights use quick_gelu
    # "patch": one linear map per patch (CLIP); "conv": stride-2 3x3 convolutions down to the same
    # token grid, which trains much faster from random weights on small data
    stem: Literal["patch", "conv"] = "patch"

    def __post_init__(self) -> None:
        _check_positive(
            "BackboneConfig",
            img_size=self.img_size,
            patch_size=self.patch_size,
            embed_dim=self.embed_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
        )
        if self.img_size % self.patch_size:
            raise InputError(
                f"BackboneConfig: img_size {self.img_size} is not a multiple of "
                f"patch_size {self.patch_size}."
            )
        if self.embed_dim % self.num_heads:
            raise InputError(
                f"BackboneConfig: embed_dim {self.embed_dim} is not divisible by "
                f"num_heads {self.num_heads}."
            )
        _check_choice("BackboneConfig", "act", self.act, ("gelu", "quick_gelu"))
        _check_choice("BackboneConfig", "stem", self.stem, ("patch", "conv"))
        if self.stem == "conv":
            if self.patch_size < 4 or self.patch_size & (self.patch_size - 1):
                raise InputError(
                    "BackboneConfig: the conv stem needs a power-of-two patch_size of at least "
                    f"4, got {self.patch_size}."
                )
            if self.init != "random":
                raise InputError(
                    "BackboneConfig: CLIP weights have a patch stem; use stem 'patch' with "
                    f"init {self.init!r}."
                )

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneConfig:
        return from_plain_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return to_plain_dict(self)


@dataclass(frozen=True)
class ComPAConfig:
    """Continuous modality-based parameter adapter: per-image LoRA deltas from a modality feature."""

    enabled: bool = True  # False: a plain ViT (no per-image deltas)
    num_bases: int = 32  # L, learnable modality bases (rows of Omega)
    lora_rank: int = 16  # r of the per-image low-rank factors
    lora_targets: tuple[str, ...] = ("qkv", "fc1")  # Linear layers of every block that get deltas
    context_hidden: int = 256  # width of the modality-context and parameter-net MLPs

    def __post_init__(self) -> None:
        _check_positive(
            "ComPAConfig",
            num_bases=self.num_bases,
            lora_rank=self.lora_rank,
            context_hidden=self.context_hidden,
        )
        for target in self.lora_targets:
            _check_choice("ComPAConfig", "lora_targets", target, ("qkv", "fc1", "fc2"))
        if len(set(self.lora_targets)) != len(self.lora_targets):
            raise InputError(f"ComPAConfig.lora_targets has duplicates: {self.lora_targets}.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComPAConfig:
        return from_plain_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return to_plain_dict(self)


@dataclass(frozen=True)
class HeadConfig:
    """Query-token pooling, embedding, BNNeck and the alignment with frozen MFMs."""

    num_queries: int = 4  # N modality-specific query tokens
    embed_dim: int = 768  # E, size of the retrieval embedding
    align: Literal["difference", "single", "none"] = "difference"
    align_weight: float = 0.01  # lambda of the alignment loss
    align_temperature: float = 0.07
    volume_pooling: Literal["mean", "attention"] = "mean"  # slice embeddings -> volume embedding

    def __post_init__(self) -> None:
        _check_positive(
            "HeadConfig",
            num_queries=self.num_queries,
            embed_dim=self.embed_dim,
            align_temperature=self.align_temperature,
        )
        _check_choice("HeadConfig", "align", self.align, ("difference", "single", "none"))
        _check_choice("HeadConfig", "volume_pooling", self.volume_pooling, ("mean", "attention"))
        if self.align_weight < 0:
            raise InputError(f"HeadConfig.align_weight must be >= 0, got {self.align_weight}.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadConfig:
        return from_plain_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return to_plain_dict(self)


@dataclass(frozen=True)
class PreprocessConfig:
    """Pixels in modality units -> model input. Saved in every checkpoint: scoring sees exactly
    what training saw."""

    img_size: int = 224
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"
    in_chans: int = 3
    intensity: Literal["percentile"] = "percentile"  # robust [low_pct, high_pct] -> [0, 1]
    low_pct: float = 0.5
    high_pct: float = 99.5

    def __post_init__(self) -> None:
        _check_positive("PreprocessConfig", img_size=self.img_size)
        _check_choice(
            "PreprocessConfig", "interpolation", self.interpolation, ("bilinear", "bicubic")
        )
        _check_choice("PreprocessConfig", "intensity", self.intensity, ("percentile",))
        _check_choice("PreprocessConfig", "in_chans", self.in_chans, (3,))
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise InputError(
                "PreprocessConfig: mean and std need one value per channel "
                f"({self.in_chans}), got {len(self.mean)} and {len(self.std)}."
            )
        if min(self.std) <= 0:
            raise InputError(f"PreprocessConfig.std must be > 0, got {self.std}.")
        if not 0.0 <= self.low_pct < self.high_pct <= 100.0:
            raise InputError(
                "PreprocessConfig: need 0 <= low_pct < high_pct <= 100, got "
                f"{self.low_pct}, {self.high_pct}."
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        return from_plain_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return to_plain_dict(self)


@dataclass(frozen=True)
class ModelConfig:
    """The whole re-identifier."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    compa: ComPAConfig = field(default_factory=ComPAConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    # frozen MFMs for the alignment loss: "phantom-mfm" or "open_clip:<name>:<local path>"
    mfm: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.preprocess.img_size != self.backbone.img_size:
            raise InputError(
                f"ModelConfig: preprocess.img_size {self.preprocess.img_size} differs "
                f"from backbone.img_size {self.backbone.img_size}; make them equal."
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        nested = {
            "backbone": BackboneConfig,
            "compa": ComPAConfig,
            "head": HeadConfig,
            "preprocess": PreprocessConfig,
        }
        return from_plain_dict(cls, data, nested)

    def to_dict(self) -> dict[str, Any]:
        return to_plain_dict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of the re-identifier (P x K batches, ID + triplet + alignment losses)."""

    epochs: int = 60
    batch_p: int = 16  # identities per batch
    batch_k: int = 4  # images per identity
    lr: float = 3.5e-4
    weight_decay: float = 1e-4
    warmup_epochs: int = 5
    grad_clip: float = 1.0  # max gradient norm; <= 0 disables clipping
    bf16: bool = False  # autocast to bfloat16 (GPU)
    seed: int = 0
    triplet_margin: float = 0.0  # <= 0 selects the soft-margin triplet loss
    label_smoothing: float = 0.1
    images_per_epoch: int = 0  # 0: one pass over the training images

    def __post_init__(self) -> None:
        _check_positive(
            "TrainConfig",
            epochs=self.epochs,
            batch_p=self.batch_p,
            batch_k=self.batch_k,
            lr=self.lr,
        )
        if self.warmup_epochs < 0 or self.weight_decay < 0 or self.images_per_epoch < 0:
            raise InputError(
                "TrainConfig: warmup_epochs, weight_decay and images_per_epoch must be >= 0."
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InputError(
                f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing}."
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return from_plain_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return to_plain_dict(self)


def available_presets() -> list[str]:
    """Names of the bundled presets (``reid_model/presets/<name>.json``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name: str) -> tuple[ModelConfig, TrainConfig]:
    """Load a preset by name (``"test"``, ``"demo"``, ``"paper"``) or from a JSON file path.

    Parameters
    ----------
    name
        A bundled preset name, or the path of a JSON file with ``"model"`` and ``"train"`` objects.

    Returns
    -------
    tuple[ModelConfig, TrainConfig]

    Raises
    ------
    InputError
        If the preset does not exist, is not valid JSON or holds unknown keys.
    """
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        path = Path(name)
        if not path.is_file():
            raise InputError(
                f"Unknown preset {name!r}: use one of {available_presets()} or the "
                "path of a preset JSON file."
            )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(
            f"Preset {path} cannot be read as JSON ({exc}); fix or replace it."
        ) from exc
    if not isinstance(data, dict) or set(data) != {"model", "train"}:
        raise InputError(
            f"Preset {path} must be a JSON object with exactly the keys 'model' and 'train'."
        )
    return ModelConfig.from_dict(data["model"]), TrainConfig.from_dict(data["train"])
