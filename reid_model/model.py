"""MaMI: ViT backbone + ComPA per-image LoRA deltas + modality-specific query tokens + BNNeck.

``forward`` takes preprocessed images (B, 3, H, W) or volumes (B, S, 3, H, W) and returns the
named tensors the losses and the scorer need; ``embed`` is the retrieval entry point;
``align_targets`` gives the frozen-MFM features that the alignment loss pulls the parts towards.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deid.errors import InputError
from reid_model.compa import ComPA, ComPAOutput
from reid_model.config import ModelConfig
from reid_model.mfm import FrozenMFM, MFMBag, load_mfms
from reid_model.query_tokens import QueryPooling
from reid_model.vit_lora import create_backbone, inject_lora


class MaMI(nn.Module):
    """The all-in-one medical image re-identifier.

    Parameters
    ----------
    cfg
        Model configuration.
    num_classes
        Training identities for the ID classifier; 0 builds no classifier (inference).
    mfm
        Frozen MFM(s) for ``align_targets``; they are not part of ``state_dict``.
    mfm_dim
        Output width of ``parts_proj`` when no MFM is given (restoring a checkpoint).
    load_init
        Load ``cfg.backbone.init`` weights; False when the weights come from a checkpoint.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        num_classes: int = 0,
        *,
        mfm: MFMBag | FrozenMFM | None = None,
        mfm_dim: int | None = None,
        load_init: bool = True,
    ) -> None:
        super().__init__()
        self.cfg, self.num_classes = cfg, num_classes
        backbone_cfg = (
            cfg.backbone if load_init else dataclasses.replace(cfg.backbone, init="random")
        )
        self.backbone = create_backbone(backbone_cfg)
        dim, head = cfg.backbone.embed_dim, cfg.head
        self.compa: ComPA | None = None
        # the wrapped layers live in self.backbone; a plain list keeps them out of state_dict twice
        self._lora: list[dict[str, Any]] = []
        if cfg.compa.enabled:
            self._lora = inject_lora(self.backbone, cfg.compa.lora_targets)
            shapes = {
                n: (layer.in_features, layer.out_features) for n, layer in self._lora[0].items()
            }
            self.compa = ComPA(dim, cfg.backbone.depth, shapes, cfg.compa)
        else:  # no modality feature: the query MLP reads one learned constant instead
            self.static_modality = nn.Parameter(torch.randn(dim) * 0.02)
        self.queries = QueryPooling(dim, head.num_queries)
        self.neck = nn.Linear((head.num_queries + 1) * dim, head.embed_dim)
        self.bnneck = nn.BatchNorm1d(head.embed_dim)
        self.bnneck.bias.requires_grad_(False)  # BNNeck: no shift before the classifier
        self.classifier = (
            nn.Linear(head.embed_dim, num_classes, bias=False) if num_classes else None
        )
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)
        self.slice_attention = (
            nn.Linear(head.embed_dim, 1) if head.volume_pooling == "attention" else None
        )
        self._mfm: MFMBag | None = None
        self.mfm_dim = 0
        self.parts_proj: nn.Linear | None = None
        if mfm is not None:
            self.attach_mfm(mfm)
        elif mfm_dim:
            self.mfm_dim = mfm_dim
            self.parts_proj = nn.Linear(dim, mfm_dim)

    # ------------------------------------------------------------------ MFMs

    def attach_mfm(self, mfm: MFMBag | FrozenMFM) -> None:
        """Use ``mfm`` for ``align_targets``; creates ``parts_proj`` if needed (so attach before
        building the optimizer)."""
        bag = mfm if isinstance(mfm, MFMBag) else MFMBag([mfm])
        if self.parts_proj is not None and self.mfm_dim != bag.dim:
            raise InputError(
                f"The model's parts_proj outputs {self.mfm_dim} features but the given "
                f"MFM(s) give {bag.dim}; attach the MFMs it was trained with."
            )
        if self.parts_proj is None:
            self.parts_proj = nn.Linear(self.cfg.backbone.embed_dim, bag.dim)
            self.parts_proj.to(self.backbone.pos_embed.device)
        self.mfm_dim = bag.dim
        device = self.backbone.pos_embed.device
        self._mfm = bag.to(device)

    def _apply(self, fn: Any, recurse: bool = True) -> MaMI:
        super()._apply(fn, recurse)  # .to()/.cuda()/.half() also move the unregistered MFMs
        if self._mfm is not None:
            for member in self._mfm.members:
                member._apply(fn, recurse)
        return self

    # ------------------------------------------------------------------ stages

    def forward_trunk(self, x: Tensor) -> tuple[Tensor, ComPAOutput | None]:
        """Images (B, 3, H, W) -> all tokens after the final norm (B, 1 + T, D), ComPA output."""
        vit = self.backbone
        patches = vit.patch_embed(x)
        compa = self.compa(patches) if self.compa is not None else None
        tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(patches)))
        if compa is not None:
            for i, layers in enumerate(self._lora):
                for name, layer in layers.items():
                    a, b = compa.factors[name]
                    layer.factors = (a[i], b[i])
        try:
            tokens = vit.blocks(tokens)
        finally:  # never leave one batch's deltas installed for the next call
            for layers in self._lora:
                for layer in layers.values():
                    layer.factors = None
        return vit.norm(tokens), compa

    def _encode_images(self, x: Tensor) -> dict[str, Tensor]:
        tokens, compa = self.forward_trunk(x)
        cls, patches = tokens[:, 0], tokens[:, self.backbone.num_prefix_tokens :]
        if compa is not None:
            m = compa.modality_feature
        else:
            m = self.static_modality.expand(x.shape[0], -1)
        parts, attn = self.queries(m, patches)
        out = {
            "feat": self.neck(torch.cat([cls, parts.flatten(1)], dim=1)),
            "parts": parts,
            "attn": attn,
        }
        if compa is not None:
            out["modality_probs"] = compa.modality_probs
        return out

    def forward(self, x: Tensor, slice_mask: Tensor | None = None) -> dict[str, Tensor]:
        """Run the re-identifier.

        Parameters
        ----------
        x
            Preprocessed images (B, 3, H, W) or volumes (B, S, 3, H, W).
        slice_mask
            Volumes only: (B, S) bool, True for real slices (padding excluded from pooling).

        Returns
        -------
        dict[str, Tensor]
            ``embedding`` (B, E) after BNNeck (L2-normalise for retrieval); ``feat`` (B, E)
            before BN (triplet); ``logits`` (B, C) if ``num_classes``; ``parts`` (B, N, D);
            ``parts_proj`` (B, N, D_mfm) if an MFM is attached or restored; ``attn`` (B, N, T)
            query attention maps ((B, S, N, T) for volumes); ``modality_probs`` (B, L) if ComPA
            is enabled. Volume outputs are slice outputs pooled per ``head.volume_pooling``
            (``parts`` and ``modality_probs``: mean over real slices).
        """
        if x.dim() == 4:
            out = self._encode_images(self._check_images(x))
        elif x.dim() == 5:
            out = self._encode_volumes(x, slice_mask)
        else:
            raise InputError(
                f"MaMI expects (B, 3, H, W) images or (B, S, 3, H, W) volumes, got "
                f"shape {tuple(x.shape)}."
            )
        out["embedding"] = self.bnneck(out["feat"])
        if self.classifier is not None:
            out["logits"] = self.classifier(out["embedding"])
        if self.parts_proj is not None:
            out["parts_proj"] = self.parts_proj(out["parts"])
        return out

    def _check_images(self, x: Tensor) -> Tensor:
        size = self.cfg.backbone.img_size
        if x.shape[-3:] != (3, size, size):
            raise InputError(
                f"MaMI expects 3 x {size} x {size} inputs, got {tuple(x.shape[-3:])}; "
                "preprocess with reid_model.preprocess and the checkpoint's config."
            )
        return x

    def _encode_volumes(self, x: Tensor, slice_mask: Tensor | None) -> dict[str, Tensor]:
        b, s = x.shape[:2]
        flat = self._encode_images(self._check_images(x.flatten(0, 1)))
        per_slice = {k: v.unflatten(0, (b, s)) for k, v in flat.items()}
        mask = _slice_weights(slice_mask, b, s, x.device)  # (B, S), rows sum to 1
        if self.slice_attention is not None:
            scores = self.slice_attention(per_slice["feat"]).squeeze(-1)
            scores = scores.masked_fill(mask == 0, float("-inf"))
            feat_weights = scores.softmax(dim=1)
        else:
            feat_weights = mask
        out = {
            "feat": torch.einsum("bs,bse->be", feat_weights.to(x.dtype), per_slice["feat"]),
            "parts": torch.einsum("bs,bsnd->bnd", mask.to(x.dtype), per_slice["parts"]),
            "attn": per_slice["attn"],
        }
        if "modality_probs" in per_slice:
            out["modality_probs"] = torch.einsum(
                "bs,bsl->bl", mask.to(x.dtype), per_slice["modality_probs"]
            )
        return out

    # ------------------------------------------------------------------ entry points

    @torch.no_grad()
    def embed(self, x: Tensor, slice_mask: Tensor | None = None) -> Tensor:
        """L2-normalised retrieval embeddings (B, E), computed in eval mode without gradient."""
        was_training = self.training
        self.eval()
        try:
            return F.normalize(self.forward(x, slice_mask)["embedding"].float(), dim=-1)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def align_targets(
        self, x: Tensor, attn: Tensor | None = None, slice_mask: Tensor | None = None
    ) -> Tensor | None:
        """Frozen-MFM features pooled with the model's query attention maps: (B, N, D_mfm).

        Parameters
        ----------
        x
            The same preprocessed batch as given to ``forward``.
        attn
            ``forward(x)["attn"]`` if already computed (saves a second trunk pass).
        slice_mask
            Volumes only, as in ``forward``.

        Returns
        -------
        Tensor | None
            Targets (no gradient: the maps are detached); None if no MFM is attached. Several
            MFMs are concatenated along D. Volumes: the mean over real slices.
        """
        if self._mfm is None or len(self._mfm) == 0:
            return None
        images = x.flatten(0, 1) if x.dim() == 5 else x
        if attn is None:
            attn = self._encode_images(self._check_images(images))["attn"]
        attn = attn.flatten(0, 1) if attn.dim() == 4 else attn
        grid = self.cfg.backbone.grid_size
        maps = attn.detach().float().unflatten(-1, (grid, grid))  # (B', N, g, g)
        targets = self._mfm.pooled(images, maps)
        if x.dim() == 5:
            b, s = x.shape[:2]
            weights = _slice_weights(slice_mask, b, s, x.device)
            targets = torch.einsum(
                "bs,bsnd->bnd", weights.to(targets.dtype), targets.unflatten(0, (b, s))
            )
        return targets


def _slice_weights(slice_mask: Tensor | None, b: int, s: int, device: torch.device) -> Tensor:
    """(B, S) averaging weights over the real slices of each volume."""
    if slice_mask is None:
        return torch.full((b, s), 1.0 / s, device=device)
    if slice_mask.shape != (b, s):
        raise InputError(f"slice_mask must have shape {(b, s)}, got {tuple(slice_mask.shape)}.")
    mask = slice_mask.to(device=device, dtype=torch.float32)
    counts = mask.sum(dim=1, keepdim=True)
    if bool((counts == 0).any()):
        raise InputError("slice_mask marks a volume without any real slice; drop that volume.")
    return mask / counts


def build_model(cfg: ModelConfig, num_classes: int = 0, *, with_mfm: bool = True) -> MaMI:
    """Build MaMI from ``cfg``, loading the frozen MFMs named in ``cfg.mfm`` when ``with_mfm``.

    Raises
    ------
    CheckpointError
        If the backbone init or an MFM's weights cannot be loaded.
    """
    mfm = load_mfms(cfg.mfm, cfg.preprocess) if (with_mfm and cfg.mfm) else None
    return MaMI(cfg, num_classes=num_classes, mfm=mfm)
