"""Training losses of the re-identifier, as pure functions of tensors.

The training objective is ``id_loss + triplet_loss + align_weight * alignment``, where the
alignment term is :func:`difference_alignment_loss` (the default), :func:`single_alignment_loss`
(ablation) or absent. Every function returns a scalar that stays attached to the autograd graph,
also in the degenerate cases where it is zero.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from deid.errors import InputError

AlignKind = Literal["difference", "single", "none"]


def _check_labels(features: Tensor, targets: Tensor, name: str) -> None:
    if features.dim() != 2:
        raise InputError(f"{name} must be (B, D), got shape {tuple(features.shape)}.")
    if targets.shape != (features.shape[0],):
        raise InputError(
            f"targets must be ({features.shape[0]},) to match {name}, got {tuple(targets.shape)}."
        )


def _zero(like: Tensor) -> Tensor:
    # A zero that keeps the graph: backward() works and gives zero gradients.
    return like.sum() * 0.0


def id_loss(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Identity classification loss (cross-entropy over training patients).

    Parameters
    ----------
    logits : Tensor
        (B, C) unnormalised class scores.
    targets : Tensor
        (B,) integer identity labels in ``[0, C)``.
    label_smoothing : float
        Mass in ``[0, 1)`` spread uniformly over all classes.

    Returns
    -------
    Tensor
        Scalar mean loss.

    Raises
    ------
    InputError
        If the shapes disagree or ``label_smoothing`` is outside ``[0, 1)``.
    """
    _check_labels(logits, targets, "logits")
    if not 0.0 <= label_smoothing < 1.0:
        raise InputError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
    if logits.shape[0] == 0:
        return _zero(logits)
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def pairwise_euclidean(x: Tensor) -> Tensor:
    """(B, B) Euclidean distances between the rows of ``x``, differentiable off the diagonal."""
    sq = x.pow(2).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    # The clamp keeps sqrt's gradient finite for coincident points (the diagonal).
    return d2.clamp(min=1e-12).sqrt()


def triplet_loss(
    embedding: Tensor, targets: Tensor, margin: float = 0.0, *, normalize: bool = False
) -> Tensor:
    """Batch-hard triplet loss.

    For each anchor the farthest same-label sample (hardest positive, distance ``d_ap``) and the
    closest other-label sample (hardest negative, ``d_an``) are used, with Euclidean distances on
    the raw features (on L2-normalised ones when ``normalize``). ``margin <= 0`` selects the
    soft margin ``log(1 + exp(d_ap - d_an))``; ``margin > 0`` the margin ranking
    ``max(0, d_ap - d_an + margin)``. Anchors without a positive or without a negative in the
    batch are left out of the mean.

    Parameters
    ----------
    embedding : Tensor
        (B, D) features (before the BNNeck in MaMI).
    targets : Tensor
        (B,) identity labels.
    margin : float
        See above.
    normalize : bool
        L2-normalise the features first.

    Returns
    -------
    Tensor
        Scalar mean loss over valid anchors; zero (attached to the graph) when none is valid.

    Raises
    ------
    InputError
        If the shapes disagree.
    """
    _check_labels(embedding, targets, "embedding")
    if embedding.shape[0] < 2:
        return _zero(embedding)
    x = F.normalize(embedding, dim=1) if normalize else embedding
    dist = pairwise_euclidean(x)
    same = targets[:, None] == targets[None, :]
    eye = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
    pos = same & ~eye
    neg = ~same
    valid = pos.any(dim=1) & neg.any(dim=1)
    if not bool(valid.any()):
        return _zero(embedding)
    d_ap = torch.where(pos, dist, torch.full_like(dist, -torch.inf)).amax(dim=1)[valid]
    d_an = torch.where(neg, dist, torch.full_like(dist, torch.inf)).amin(dim=1)[valid]
    if margin > 0:
        return F.relu(d_ap - d_an + margin).mean()
    return F.softplus(d_ap - d_an).mean()


def _check_parts(parts_p: Tensor, parts_q: Tensor) -> None:
    if parts_p.dim() != 3 or parts_q.dim() != 3:
        raise InputError(
            f"parts must be (B, N, D); got {tuple(parts_p.shape)} and {tuple(parts_q.shape)}."
        )
    if parts_p.shape != parts_q.shape:
        raise InputError(
            f"re-identifier parts {tuple(parts_p.shape)} and MFM parts {tuple(parts_q.shape)} "
            "must have equal shapes; project both to the same dimension before aligning."
        )


def _info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Mean over n of InfoNCE where a[n, m] must match b[n, m] among b[n, :]. Shapes (N, M, D)."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(1, 2) / temperature
    n, m, _ = logits.shape
    target = torch.arange(m, device=a.device).repeat(n)
    return F.cross_entropy(logits.reshape(n * m, m), target)


def difference_alignment_loss(
    parts_p: Tensor,
    parts_q: Tensor,
    temperature: float = 0.07,
    *,
    max_pairs: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Contrastive alignment of the re-identifier's and the MFM's feature differences.

    For every unordered image pair ``i < j`` of the batch and every query token ``n``,
    ``u = P_i^n - P_j^n`` and ``v = Q_i^n - Q_j^n``. After L2 normalisation, each ``u`` must pick
    its own ``v`` among the ``v`` of all pairs (InfoNCE, logits ``u . v / temperature``). The
    loss is averaged over pairs and tokens. Ordered pairs would add only the negated copies
    ``u_ji = -u_ij``, so they are left out. The logits hold N x M^2 values for M = B(B-1)/2
    pairs (B = 128: 8,128 pairs, 264 M logits per token set), so large batches can keep a
    random subset of ``max_pairs`` pairs, drawn with ``generator``.

    Parameters
    ----------
    parts_p : Tensor
        (B, N, D) query-pooled re-identifier features P.
    parts_q : Tensor
        (B, N, D) MFM features Q pooled with the same query attention.
    temperature : float
        Softmax temperature, > 0.
    max_pairs : int | None
        Keep at most this many pairs (None: all).
    generator : torch.Generator | None
        Randomness for the pair subset; required when ``max_pairs`` bites.

    Returns
    -------
    Tensor
        Scalar loss; zero (attached to the graph) for B < 2. With B = 2 there is a single pair,
        so the loss is exactly zero.

    Raises
    ------
    InputError
        If the shapes differ (including D_p != D_q), the temperature is not positive,
        ``max_pairs < 2``, or a subset is needed and no generator is given.
    """
    _check_parts(parts_p, parts_q)
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}.")
    b = parts_p.shape[0]
    if b < 2:
        return _zero(parts_p) + _zero(parts_q)
    if max_pairs is not None and max_pairs < 2:
        raise InputError(f"max_pairs must be >= 2 to leave negatives, got {max_pairs}.")
    i, j = torch.triu_indices(b, b, offset=1, device=parts_p.device)
    if max_pairs is not None and len(i) > max_pairs:
        if generator is None:
            raise InputError("difference_alignment_loss needs a generator to subsample pairs.")
        keep = torch.randperm(len(i), generator=generator)[:max_pairs].to(i.device)
        i, j = i[keep], j[keep]
    u = (parts_p[i] - parts_p[j]).transpose(0, 1)  # (N, M, D)
    v = (parts_q[i] - parts_q[j]).transpose(0, 1)
    return _info_nce(u, v, temperature)


def single_alignment_loss(parts_p: Tensor, parts_q: Tensor, temperature: float = 0.07) -> Tensor:
    """Contrastive alignment of each image's own features (ablation of the difference loss).

    For each query token ``n``, ``P_i^n`` must pick ``Q_i^n`` among ``Q_1^n .. Q_B^n``
    (InfoNCE over cosine similarities divided by ``temperature``), averaged over images and tokens.

    Parameters
    ----------
    parts_p, parts_q, temperature
        As in :func:`difference_alignment_loss`.

    Returns
    -------
    Tensor
        Scalar loss; zero for B < 2.

    Raises
    ------
    InputError
        If the shapes differ or the temperature is not positive.
    """
    _check_parts(parts_p, parts_q)
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}.")
    if parts_p.shape[0] < 2:
        return _zero(parts_p) + _zero(parts_q)
    return _info_nce(parts_p.transpose(0, 1), parts_q.transpose(0, 1), temperature)


def alignment_loss(
    kind: AlignKind, parts_p: Tensor, parts_q: Tensor | None, temperature: float = 0.07
) -> Tensor:
    """Dispatch on ``HeadConfig.align``: ``"difference"``, ``"single"`` or ``"none"`` (zero).

    Raises
    ------
    InputError
        If ``kind`` is unknown, or MFM parts are missing for an alignment that needs them.
    """
    if kind == "none":
        return _zero(parts_p)
    if parts_q is None:
        raise InputError(
            f"align={kind!r} needs MFM features; configure at least one MFM or set align='none'."
        )
    if kind == "difference":
        return difference_alignment_loss(parts_p, parts_q, temperature)
    if kind == "single":
        return single_alignment_loss(parts_p, parts_q, temperature)
    raise InputError(f"unknown alignment {kind!r}; use 'difference', 'single' or 'none'.")
