"""Modality-specific query tokens that attention-pool the patch features into part features."""

from __future__ import annotations

import math

from torch import Tensor, nn


class QueryPooling(nn.Module):
    """N query tokens from a 3-layer MLP of the modality feature M, then attention pooling.

    ``attn = softmax(O @ Linear(f)^T / sqrt(D))`` over the T patch features ``f``;
    ``P = attn @ f`` gives the part features ``P^1..P^N``.
    """

    def __init__(self, dim: int, num_queries: int) -> None:
        super().__init__()
        self.dim, self.num_queries = dim, num_queries
        self.query_mlp = nn.Sequential(
            nn.Linear(dim, dim),
            nn.GELU(),
            nn.Linear(dim, dim),
            nn.GELU(),
            nn.Linear(dim, num_queries * dim),
        )
        self.key = nn.Linear(dim, dim)

    def forward(self, m: Tensor, patches: Tensor) -> tuple[Tensor, Tensor]:
        """``m``: (B, D), ``patches``: (B, T, D) -> parts (B, N, D), attn (B, N, T)."""
        queries = self.query_mlp(m).view(m.shape[0], self.num_queries, self.dim)
        logits = queries @ self.key(patches).transpose(1, 2) / math.sqrt(self.dim)
        attn = logits.softmax(dim=-1)
        return attn @ patches, attn
