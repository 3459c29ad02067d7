"""ComPA: the continuous modality-based parameter adapter of MaMI.

Patch tokens -> local modality context (MLP) -> mean -> global context -> modality probabilities
``w`` over ``L`` learnable bases ``Omega`` -> continuous modality feature ``M = w @ Omega`` ->
Att-PNet / FFN-PNet emit per-image LoRA factors for every block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reid_model.config import ComPAConfig


class FactorGenerator(nn.Module):
    """A parameter net: modality feature ``M`` -> per-block low-rank factors ``(A, B)``.

    One MLP, shared by all blocks and told the block by a learned block embedding, maps ``M``
    to a hidden code per block; linear read-outs turn it into ``A`` (r x Din) and ``B`` (Dout x r)
    for each target layer. The ``B`` read-out starts at zero, so every delta ``B @ A`` is zero at
    initialisation (the network starts as the plain ViT), while ``A`` starts random so that
    ``dL/dB != 0`` from the first step; once ``B`` moves, the ``A`` read-out gets gradient too.
    Zero-initialising both read-outs would leave both without gradient forever.
    """

    def __init__(
        self, in_dim: int, depth: int, shapes: dict[str, tuple[int, int]], rank: int, hidden: int
    ) -> None:
        super().__init__()
        self.depth, self.rank, self.shapes = depth, rank, dict(shapes)
        self.block_embed = nn.Parameter(torch.randn(depth, hidden) * 0.02)
        self.inp = nn.Linear(in_dim, hidden)
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.to_a = nn.ModuleDict(
            {n: nn.Linear(hidden, rank * d_in) for n, (d_in, _) in shapes.items()}
        )
        self.to_b = nn.ModuleDict(
            {n: nn.Linear(hidden, d_out * rank) for n, (_, d_out) in shapes.items()}
        )
        for layer in self.to_b.values():
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, m: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """``m``: (B, in_dim) -> {target: (A (depth, B, r, Din), B (depth, B, Dout, r))}.

        Block-major, so each block's factors are one contiguous slice.
        """
        h = self.mlp(self.inp(m).unsqueeze(0) + self.block_embed.unsqueeze(1))  # (depth, B, hidden)
        batch = m.shape[0]
        out: dict[str, tuple[Tensor, Tensor]] = {}
        for name, (d_in, d_out) in self.shapes.items():
            # 1/sqrt(Din) keeps x @ A^T at the scale of x whatever the width
            a = self.to_a[name](h).view(self.depth, batch, self.rank, d_in) / math.sqrt(d_in)
            b = self.to_b[name](h).view(self.depth, batch, d_out, self.rank)
            out[name] = (a, b)
        return out


@dataclass
class ComPAOutput:
    """What ComPA computes for one batch of images."""

    modality_probs: Tensor  # (B, L) weights over the modality bases
    modality_feature: Tensor  # (B, D) continuous modality feature M
    # target -> (A (depth, B, r, Din), B (depth, B, Dout, r))
    factors: dict[str, tuple[Tensor, Tensor]]


class ComPA(nn.Module):
    """Continuous modality-based parameter adapter.

    Parameters
    ----------
    dim
        Token width D of the backbone.
    depth
        Number of transformer blocks that receive deltas.
    shapes
        ``{target: (Din, Dout)}`` of the Linear layers that receive deltas (e.g. qkv, fc1).
    cfg
        Number of bases, LoRA rank and hidden width.
    """

    def __init__(
        self, dim: int, depth: int, shapes: dict[str, tuple[int, int]], cfg: ComPAConfig
    ) -> None:
        super().__init__()
        hidden = cfg.context_hidden
        self.local_context = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.global_context = nn.Sequential(
            nn.LayerNorm(hidden),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, cfg.num_bases),
        )
        self.bases = nn.Parameter(torch.randn(cfg.num_bases, dim) * dim**-0.5)  # Omega: L x D
        att = {n: s for n, s in shapes.items() if n == "qkv"}
        ffn = {n: s for n, s in shapes.items() if n in ("fc1", "fc2")}
        self.att_pnet = FactorGenerator(dim, depth, att, cfg.lora_rank, hidden) if att else None
        self.ffn_pnet = FactorGenerator(dim, depth, ffn, cfg.lora_rank, hidden) if ffn else None

    def forward(self, patch_tokens: Tensor) -> ComPAOutput:
        """``patch_tokens``: (B, T, D) patch embeddings (no class token)."""
        context = self.local_context(patch_tokens).mean(dim=1)  # local -> global context
        probs = self.global_context(context).softmax(dim=-1)  # (B, L)
        m = probs @ self.bases  # (B, D)
        factors: dict[str, tuple[Tensor, Tensor]] = {}
        for pnet in (self.att_pnet, self.ffn_pnet):
            if pnet is not None:
                factors.update(pnet(m))
        return ComPAOutput(probs, m, factors)
