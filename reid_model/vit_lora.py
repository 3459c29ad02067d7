"""ViT backbone (timm) whose chosen Linear layers take a different low-rank delta per image.

The deltas come from ComPA. ``MaMI.forward_trunk`` installs them on the wrapped layers (their
``factors`` attribute) for one forward pass; they are applied as batched matrix products, so a
batch of images with different modalities still runs as one batch through timm's fused attention.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from deid.errors import CheckpointError
from reid_model.config import BackboneConfig

# Linear layers of a timm ``Block`` that can take per-image deltas, by short name.
LORA_TARGET_PATHS = {"qkv": ("attn", "qkv"), "fc1": ("mlp", "fc1"), "fc2": ("mlp", "fc2")}


class PerSampleLoRALinear(nn.Linear):
    """``nn.Linear`` plus an optional per-sample low-rank delta ``x @ A_i^T @ B_i^T``.

    It keeps the parameter names of ``nn.Linear``, so state dicts stay those of a plain timm ViT.
    """

    factors: tuple[Tensor, Tensor] | None

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.factors = None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> PerSampleLoRALinear:
        """Wrap ``linear``, sharing (not copying) its parameters."""
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        new.weight = linear.weight
        new.bias = linear.bias
        return new

    def forward(self, x: Tensor) -> Tensor:
        if self.factors is None:
            return F.linear(x, self.weight, self.bias)
        a, b = self.factors  # a: (B, r, Din), b: (B, Dout, r)
        if x.dim() != 3 or a.shape[0] != x.shape[0]:
            raise ValueError(
                f"LoRA factors for batch {a.shape[0]} cannot apply to input of shape "
                f"{tuple(x.shape)}; expected (B, T, {self.in_features})."
            )
        if torch.is_autocast_enabled(x.device.type):  # cast x once for both products
            x = x.to(torch.get_autocast_dtype(x.device.type))
        out = F.linear(x, self.weight, self.bias)
        low = torch.bmm(x, a.transpose(1, 2).to(x.dtype))  # (B, T, r)
        # in place: no copy of the (B, T, Dout) output (linear's backward does not need it)
        return out.baddbmm_(low, b.transpose(1, 2).to(out.dtype))


class ConvStem(nn.Module):
    """Convolutional patch embedding (after Xiao et al. 2021, "Early convolutions help
    transformers see better"): log2(patch) stages of a stride-2 and a stride-1 3x3 convolution,
    each with batch norm and ReLU, widening to ``embed_dim``, then a 1x1 projection. Same token
    grid and output (B, T, D) as timm's ``PatchEmbed``, whose attributes the ViT reads are
    mirrored here."""

    dynamic_img_pad = False

    def __init__(
        self, img_size: int, patch_size: int, in_chans: int = 3, embed_dim: int = 768, **_: object
    ) -> None:
        super().__init__()
        side = img_size if isinstance(img_size, int) else img_size[0]
        self.img_size = (side, side)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (side // patch_size, side // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        layers: list[nn.Module] = []
        steps = patch_size.bit_length() - 1
        width = in_chans
        for i in range(steps):
            out = max(embed_dim >> (steps - 1 - i), 8)
            for stride, source in ((2, width), (1, out)):
                layers += [
                    nn.Conv2d(source, out, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                ]
            width = out
        layers.append(nn.Conv2d(width, embed_dim, 1))
        self.proj = nn.Sequential(*layers)

    def feat_ratio(self, as_scalar: bool = True) -> int | tuple[int, int]:
        return self.patch_size[0] if as_scalar else self.patch_size

    def dynamic_feat_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        return self.grid_size

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def create_backbone(cfg: BackboneConfig) -> VisionTransformer:
    """Build the CLIP-layout ViT of ``cfg`` (class token, pre-norm, no head) and load its init.

    Parameters
    ----------
    cfg
        Backbone configuration. ``cfg.init`` is ``"random"`` or the path of a local OpenAI /
        open_clip checkpoint (``.safetensors`` or a ``torch.save`` state dict).

    Raises
    ------
    CheckpointError
        If the init checkpoint is missing, unreadable or does not fit the architecture.
    """
    vit = VisionTransformer(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        in_chans=3,
        num_classes=0,
        global_pool="token",
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_ratio,
        qkv_bias=True,
        pre_norm=True,  # CLIP's ln_pre; also removes the patch-embedding bias, as in CLIP
        norm_layer=nn.LayerNorm,  # eps 1e-5, as CLIP
        act_layer=cfg.act,
        embed_layer=ConvStem if cfg.stem == "conv" else PatchEmbed,
    )
    if cfg.init != "random":
        load_openclip_visual(vit, Path(cfg.init))
    return vit


def inject_lora(
    vit: VisionTransformer, targets: tuple[str, ...]
) -> list[dict[str, PerSampleLoRALinear]]:
    """Replace the target Linear layers of every block by ``PerSampleLoRALinear`` (in place).

    Returns, per block, the wrapped layers by target name.
    """
    wrapped: list[dict[str, PerSampleLoRALinear]] = []
    for block in vit.blocks:
        layers: dict[str, PerSampleLoRALinear] = {}
        for name in targets:
            parent_name, child_name = LORA_TARGET_PATHS[name]
            parent = getattr(block, parent_name)
            child = getattr(parent, child_name)
            if not isinstance(child, PerSampleLoRALinear):
                child = PerSampleLoRALinear.from_linear(child)
                setattr(parent, child_name, child)
            layers[name] = child
        wrapped.append(layers)
    return wrapped


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read tensors from ``.safetensors`` or a ``torch.save`` file, never unpickling code."""
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {path} does not exist; check the path.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors, pickle and zip errors have no common base class
        raise CheckpointError(
            f"Cannot read {path} as a weights file ({type(exc).__name__}: {exc}). OpenAI's "
            "TorchScript .pt archives are not accepted: convert them to a state dict with open_clip "
            "(save model.state_dict()) or use a .safetensors file."
        ) from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a dict of tensors; give a state dict file.")
    return obj


_OPENCLIP_RENAMES = (
    ("conv1.", "patch_embed.proj."),
    ("ln_pre.", "norm_pre."),
    ("ln_post.", "norm."),
    ("transformer.resblocks.", "blocks."),
    (".ln_1.", ".norm1."),
    (".ln_2.", ".norm2."),
    (".attn.in_proj_weight", ".attn.qkv.weight"),
    (".attn.in_proj_bias", ".attn.qkv.bias"),
    (".attn.out_proj.", ".attn.proj."),
    (".mlp.c_fc.", ".mlp.fc1."),
    (".mlp.c_proj.", ".mlp.fc2."),
)


def openclip_visual_to_timm(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename the image tower of an OpenAI/open_clip CLIP state dict to timm ViT keys.

    The text tower and the image projection (``visual.proj``) are dropped: the re-identifier
    uses the trunk only.
    """
    prefix = next(
        (p for p in ("module.visual.", "visual.") if any(k.startswith(p) for k in state_dict)), ""
    )
    if any(k.startswith(prefix + "trunk.") for k in state_dict):  # open_clip with a timm trunk
        prefix += "trunk."
        return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix) :]
        if key == "class_embedding":
            out["cls_token"] = value.reshape(1, 1, -1)
        elif key == "positional_embedding":
            out["pos_embed"] = value.unsqueeze(0)
        elif key == "proj":
            continue
        else:
            for old, new in _OPENCLIP_RENAMES:
                key = key.replace(old, new)
            out[key] = value
    return out


def load_openclip_visual(vit: VisionTransformer, path: Path) -> None:
    """Load the image tower of a CLIP checkpoint file into ``vit`` (strict; resamples pos_embed).

    Raises
    ------
    CheckpointError
        If keys are missing or unexpected, or tensor shapes differ from the configured backbone.
    """
    mapped = openclip_visual_to_timm(read_state_dict(path))
    if "pos_embed" in mapped and mapped["pos_embed"].shape != vit.pos_embed.shape:
        grid = vit.patch_embed.grid_size
        mapped["pos_embed"] = resample_abs_pos_embed(
            mapped["pos_embed"], new_size=list(grid), num_prefix_tokens=vit.num_prefix_tokens
        )
    own = vit.state_dict()
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit the configured ViT: missing keys {missing[:8]}, unexpected keys "
            f"{unexpected[:8]}. Give a CLIP ViT checkpoint and set backbone depth/width to match it."
        )
    wrong = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in mapped.items()
        if v.shape != own[k].shape
    ]
    if wrong:
        raise CheckpointError(
            f"{path} has tensor shapes that differ from the configured ViT "
            f"({wrong[:4]}); set backbone embed_dim/patch_size to match it."
        )
    vit.load_state_dict(mapped, strict=True)
