"""Frozen medical foundation models (MFMs): the feature teachers of MaMI's alignment loss.

Specs accepted by ``load_mfm``:

- ``"phantom-mfm"``: the bundled phantom MFM (``reid_model/weights/phantom-mfm/``), a small ViT
  trained on phantom findings and modality; stands in when no real MFM is installed;
- ``"phantom-mfm:<folder>"``: a phantom MFM checkpoint folder elsewhere;
- ``"open_clip:<model name>:<local weights file>"`` or ``"open_clip:local-dir:<folder>"``: the
  image tower of an open_clip model the user downloaded (e.g. BiomedCLIP's Hugging Face folder);
  nothing is fetched from the network. OpenAI weights need a ``-quickgelu`` model name.

Every wrapper takes images preprocessed for the re-identifier, re-normalises them to its own
input statistics and size, and returns its patch tokens on their spatial grid. Parameters never
require grad and the wrapper stays in eval mode, but the input may carry gradient (the scrubber
differentiates through the MFM).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from deid.errors import CheckpointError, InputError
from reid_model.checkpoint import (
    FORMAT_VERSION,
    load_state_strictly,
    read_weights_dir,
    write_weights_dir,
)
from reid_model.config import CLIP_MEAN, CLIP_STD, PreprocessConfig, from_plain_dict, to_plain_dict
from reid_model.vit_lora import ConvStem, read_state_dict

PHANTOM_MFM_DIR = Path(__file__).resolve().parent / "weights" / "phantom-mfm"


# ---------------------------------------------------------------- phantom MFM network


@dataclass(frozen=True)
class PhantomMFMConfig:
    """Architecture and labels of the phantom MFM (a small ViT with two heads)."""

    findings: tuple[str, ...]  # multi-label findings head, in this order
    modalities: tuple[str, ...]  # single-label modality (dataset) head, in this order
    img_size: int = 64
    patch_size: int = 8
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    stem: str = "patch"  # "patch" (linear patch embedding) or "conv" (see vit_lora.ConvStem)
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD

    def __post_init__(self) -> None:
        if self.stem not in ("patch", "conv"):
            raise InputError(
                f"PhantomMFMConfig: stem must be 'patch' or 'conv', not {self.stem!r}."
            )
        if self.stem == "conv" and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            raise InputError(
                "PhantomMFMConfig: the conv stem needs a power-of-two patch_size of at least 2, "
                f"not {self.patch_size}."
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhantomMFMConfig:
        return from_plain_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return to_plain_dict(self)


class PhantomMFMNet(nn.Module):
    """Small ViT encoder (patch or convolutional stem) with a findings head (multi-label) and a
    modality head.

    ``forward`` takes images normalised with ``cfg.mean``/``cfg.std`` at ``cfg.img_size`` and
    returns ``{"findings_logits": (B, F), "modality_logits": (B, M), "tokens": (B, T, D)}``.
    """

    def __init__(self, cfg: PhantomMFMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = VisionTransformer(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            num_classes=0,
            global_pool="avg",
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            class_token=False,
            embed_layer=ConvStem if cfg.stem == "conv" else PatchEmbed,
        )
        self.findings_head = nn.Linear(cfg.embed_dim, len(cfg.findings))
        self.modality_head = nn.Linear(cfg.embed_dim, len(cfg.modalities))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        tokens = self.encoder.forward_features(x)  # (B, T, D), no prefix tokens
        pooled = tokens.mean(dim=1)
        return {
            "findings_logits": self.findings_head(pooled),
            "modality_logits": self.modality_head(pooled),
            "tokens": tokens,
        }


def save_phantom_mfm(path_dir: str | Path, net: PhantomMFMNet, extra: dict | None = None) -> None:
    """Save a trained phantom MFM as a checkpoint folder (safetensors + JSON)."""
    meta = {
        "kind": "phantom-mfm",
        "format_version": FORMAT_VERSION,
        "config": net.cfg.to_dict(),
        "extra": extra or {},
    }
    write_weights_dir(path_dir, net.state_dict(), meta)


def load_phantom_mfm(path_dir: str | Path = PHANTOM_MFM_DIR) -> PhantomMFMNet:
    """Load a phantom MFM checkpoint folder (strict).

    Raises
    ------
    CheckpointError
        If the folder is missing (train the phantom MFM first), corrupt or does not match.
    """
    folder = Path(path_dir)
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"No phantom MFM checkpoint in {folder}. Train it first (`deid train --task mfm "
            "--data phantom:all:60:3 --out RUN`, then copy RUN/model there, or run "
            "tools/train_shipped_checkpoints.sh) or name another MFM "
            "(open_clip:<model>:<weights file>) in the config."
        )
    state, meta = read_weights_dir(folder, "phantom-mfm")
    try:
        cfg = PhantomMFMConfig.from_dict(meta["config"])
    except (KeyError, InputError) as exc:
        raise CheckpointError(f"{folder}: invalid phantom MFM config ({exc}).") from exc
    net = PhantomMFMNet(cfg)
    load_state_strictly(net, state, str(folder))
    return net.eval()


# ---------------------------------------------------------------- frozen wrappers


class FrozenMFM(nn.Module):
    """Base of the frozen MFM wrappers.

    Subclasses set ``name``, ``dim`` (token width), ``grid`` (token grid h x w), ``img_size``
    and implement ``encode(x) -> (B, h*w, dim)`` on inputs in the MFM's own normalisation.
    """

    name: str
    dim: int
    grid: tuple[int, int]
    img_size: tuple[int, int]

    def __init__(
        self, mean: tuple[float, ...], std: tuple[float, ...], source: PreprocessConfig
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.register_buffer(
            "src_mean", torch.tensor(source.mean).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "src_std", torch.tensor(source.std).view(1, -1, 1, 1), persistent=False
        )

    def freeze(self) -> FrozenMFM:
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> FrozenMFM:  # always eval: frozen
        return super().train(False)

    def encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Re-identifier input (B, 3, H, W) -> patch tokens on their grid (B, h, w, dim)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"{self.name}: expected images (B, 3, H, W), got {tuple(x.shape)}.")
        unit = x * self.src_std.to(x.dtype) + self.src_mean.to(x.dtype)  # back to [0, 1]
        if tuple(unit.shape[-2:]) != self.img_size:
            unit = F.interpolate(
                unit, size=self.img_size, mode="bilinear", align_corners=False, antialias=True
            )
        tokens = self.encode((unit - self.mean.to(x.dtype)) / self.std.to(x.dtype))
        return tokens.reshape(x.shape[0], self.grid[0], self.grid[1], self.dim)


class PhantomFrozenMFM(FrozenMFM):
    """The phantom MFM's encoder as a frozen feature teacher."""

    def __init__(
        self, net: PhantomMFMNet, source: PreprocessConfig, name: str = "phantom-mfm"
    ) -> None:
        super().__init__(net.cfg.mean, net.cfg.std, source)
        self.net = net
        self.name, self.dim = name, net.cfg.embed_dim
        self.grid = tuple(net.encoder.patch_embed.grid_size)  # type: ignore[assignment]
        self.img_size = (net.cfg.img_size, net.cfg.img_size)
        self.freeze()

    def encode(self, x: Tensor) -> Tensor:
        return self.net.encoder.forward_features(x)


class OpenClipMFM(FrozenMFM):
    """The image tower of an open_clip model; its patch tokens are the features."""

    def __init__(
        self,
        visual: nn.Module,
        source: PreprocessConfig,
        name: str,
        mean: tuple[float, ...] = CLIP_MEAN,
        std: tuple[float, ...] = CLIP_STD,
    ) -> None:
        super().__init__(mean, std, source)
        self.visual, self.name = visual, name
        trunk = getattr(visual, "trunk", None)
        if trunk is not None:  # open_clip wrapping a timm ViT (e.g. BiomedCLIP)
            self.dim = trunk.embed_dim
            self.grid = tuple(trunk.patch_embed.grid_size)  # type: ignore[assignment]
            # the trunk's own size: open_clip may not pass its image_size on to timm
            self.img_size = tuple(trunk.patch_embed.img_size)  # type: ignore[assignment]
        elif hasattr(visual, "grid_size") and hasattr(visual, "transformer"):
            self.dim = visual.transformer.width
            self.grid = tuple(visual.grid_size)  # type: ignore[assignment]
            self.img_size = tuple(visual.image_size)  # type: ignore[assignment]
            visual.output_tokens = True
        else:
            raise InputError(
                f"{name}: only ViT image towers are supported (patch tokens needed); "
                "choose a ViT-based open_clip model."
            )
        self.freeze()

    def encode(self, x: Tensor) -> Tensor:
        trunk = getattr(self.visual, "trunk", None)
        if trunk is not None:
            return trunk.forward_features(x)[:, trunk.num_prefix_tokens :]
        _, tokens = self.visual(x)
        return tokens


# weight file names of an open_clip / Hugging Face model folder, in order of preference
_OPEN_CLIP_WEIGHT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
)


def _open_clip_config(spec: str, model_name: str, path: Path) -> tuple[dict, dict, Path]:
    """(model config, preprocess config, weights file) of an open_clip spec."""
    import open_clip

    if model_name != "local-dir":
        model_cfg = open_clip.get_model_config(model_name)
        if model_cfg is None:
            raise InputError(
                f"MFM spec {spec!r}: open_clip has no model {model_name!r}; see "
                "open_clip.list_models(), or use open_clip:local-dir:<folder>."
            )
        return model_cfg, model_cfg.get("preprocess_cfg", {}), path
    config_path = path / "open_clip_config.json"
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"MFM spec {spec!r}: cannot read {config_path} ({exc}); the folder "
            "must hold open_clip_config.json and the weights."
        ) from exc
    weights = next((path / n for n in _OPEN_CLIP_WEIGHT_NAMES if (path / n).is_file()), None)
    if weights is None:
        raise CheckpointError(
            f"MFM spec {spec!r}: no weights file in {path} (looked for "
            f"{', '.join(_OPEN_CLIP_WEIGHT_NAMES)})."
        )
    return data.get("model_cfg", data), data.get("preprocess_cfg", {}), weights


def _load_open_clip(spec: str, rest: str, source: PreprocessConfig) -> OpenClipMFM:
    # Only the image tower is built, so text towers that would need the network (Hugging Face
    # tokenizers and configs, as BiomedCLIP's) are never touched.
    from open_clip.model import _build_vision_tower

    model_name, sep, location = rest.partition(":")
    if not sep or not model_name or not location:
        raise InputError(
            f"MFM spec {spec!r}: write open_clip:<model name>:<local weights file> "
            "or open_clip:local-dir:<folder>."
        )
    path = Path(location).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"MFM spec {spec!r}: {path} does not exist. Download the weights "
            "first and give their local path (nothing is fetched)."
        )
    model_cfg, preprocess_cfg, weights = _open_clip_config(spec, model_name, path)
    try:
        visual = _build_vision_tower(
            model_cfg["embed_dim"],
            model_cfg["vision_cfg"],
            quick_gelu=bool(model_cfg.get("quick_gelu", False)),
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"MFM spec {spec!r}: open_clip cannot build its image tower "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    state = read_state_dict(weights)
    prefix = next(
        (p for p in ("module.visual.", "visual.") if any(k.startswith(p) for k in state)), None
    )
    if prefix is None:
        raise CheckpointError(
            f"{weights} holds no image tower (no 'visual.' keys); give a CLIP checkpoint."
        )
    visual_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    load_state_strictly(visual, visual_state, str(weights))
    mean = tuple(preprocess_cfg.get("mean", CLIP_MEAN))
    std = tuple(preprocess_cfg.get("std", CLIP_STD))
    return OpenClipMFM(visual, source, name=spec, mean=mean, std=std)


def load_mfm(spec: str, preprocess: PreprocessConfig | None = None) -> FrozenMFM:
    """Load one frozen MFM from its spec (see the module docstring).

    Parameters
    ----------
    spec
        ``"phantom-mfm"``, ``"phantom-mfm:<folder>"``, ``"open_clip:<name>:<weights file>"`` or
        ``"open_clip:local-dir:<folder>"``.
    preprocess
        The re-identifier's preprocessing, whose normalisation the wrapper undoes.

    Raises
    ------
    InputError
        Malformed spec.
    CheckpointError
        Weights missing or unreadable.
    """
    source = preprocess or PreprocessConfig()
    kind, _, rest = spec.partition(":")
    if kind == "phantom-mfm":
        return PhantomFrozenMFM(
            load_phantom_mfm(Path(rest) if rest else PHANTOM_MFM_DIR), source, name=spec
        )
    if kind == "open_clip":
        return _load_open_clip(spec, rest, source)
    raise InputError(
        f"Unknown MFM spec {spec!r}: use 'phantom-mfm', 'phantom-mfm:<folder>' or "
        "'open_clip:<model name>:<local weights file>'."
    )


def pool_with_maps(tokens: Tensor, maps: Tensor) -> Tensor:
    """Pool MFM tokens with query attention maps resized to the MFM's grid.

    Parameters
    ----------
    tokens
        (B, h, w, D) MFM patch tokens.
    maps
        (B, N, g1, g2) non-negative attention maps on the re-identifier's token grid.

    Returns
    -------
    Tensor
        (B, N, D): for each query, the tokens averaged with its (resized, renormalised) map.
    """
    b, h, w, d = tokens.shape
    resized = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False).clamp_min(0)
    weights = resized.flatten(2)
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return weights.to(tokens.dtype) @ tokens.reshape(b, h * w, d)


@dataclass
class MFMBag:
    """Several frozen MFMs used at once: their pooled features are concatenated along D."""

    members: list[FrozenMFM] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return sum(m.dim for m in self.members)

    def pooled(self, x: Tensor, maps: Tensor) -> Tensor:
        """Images (B, 3, H, W) and maps (B, N, g, g) -> (B, N, sum of dims)."""
        return torch.cat([pool_with_maps(m(x), maps) for m in self.members], dim=-1)

    def to(self, *args: Any, **kwargs: Any) -> MFMBag:
        for member in self.members:
            member.to(*args, **kwargs)
        return self

    def __len__(self) -> int:
        return len(self.members)


def load_mfms(
    specs: tuple[str, ...] | list[str], preprocess: PreprocessConfig | None = None
) -> MFMBag:
    """Load every MFM of ``specs`` (e.g. ``ModelConfig.mfm``) into a bag."""
    return MFMBag([load_mfm(spec, preprocess) for spec in specs])


__all__ = [
    "FrozenMFM",
    "MFMBag",
    "OpenClipMFM",
    "PhantomFrozenMFM",
    "PhantomMFMConfig",
    "PhantomMFMNet",
    "load_mfm",
    "load_mfms",
    "load_phantom_mfm",
    "pool_with_maps",
    "save_phantom_mfm",
]
