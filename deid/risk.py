"""Linkage risk inside a release: how surely can images be tied to the same patient?

Every image is compared with every other by cosine similarity of re-identifier embeddings, in
square blocks (never an N x N matrix), keeping each image's k most similar images under a
*different* released pseudonym (or any other image when the release carries no pseudonyms).
A calibrator turns similarities into P(same patient). From these come the ARX-style trio (records
at risk, highest risk, average risk) and an estimate of how many distinct patients the release
really holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from deid.errors import InputError
from reid_model.calibration import Calibrator


def _codes(groups: Sequence | np.ndarray | None, n: int) -> np.ndarray:
    """Integer code per record; records sharing a code never count as each other's links."""
    if groups is None:
        return np.arange(n, dtype=np.int64)
    arr = np.asarray(groups, dtype=object)
    if arr.shape != (n,):
        raise InputError(f"expected one pseudonym per image ({n}), got shape {arr.shape}.")
    missing = [i for i, g in enumerate(arr) if g is None]
    if missing:
        raise InputError(
            f"{len(missing)} images (first: #{missing[0]}) have no pseudonym; give every image "
            "one, or pass pseudonyms=None to score the release as carrying no IDs."
        )
    arr = arr.astype(str)
    return np.unique(arr, return_inverse=True)[1].astype(np.int64).reshape(n)


def _merge(
    best_v: torch.Tensor, best_i: torch.Tensor, sims: torch.Tensor, offset: int, k: int
) -> None:
    """Fold a block of candidate similarities (rows x cols) into the running top-k, in place."""
    v, i = torch.topk(sims, min(k, sims.shape[1]), dim=1)
    all_v = torch.cat([best_v, v], dim=1)
    all_i = torch.cat([best_i, i + offset], dim=1)
    top_v, pos = torch.topk(all_v, k, dim=1)
    best_v.copy_(top_v)
    best_i.copy_(torch.gather(all_i, 1, pos))


def topk_neighbours(
    emb: np.ndarray,
    k: int,
    chunk: int = 4096,
    *,
    groups: Sequence | np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k neighbours of every row, computed block by block.

    Each pair of row blocks is multiplied once (the similarity is symmetric) and folded into
    every row's running top-k, so memory is O(chunk^2 + N k) and time O(N^2 D). Rows sharing a
    ``groups`` value are never neighbours; with ``groups=None`` only the row itself is
    excluded. Work runs in float32 on ``device`` (on CPU with torch's current thread count).

    Parameters
    ----------
    emb : np.ndarray
        (N, D) embeddings (normalised here).
    k : int
        Neighbours per row.
    chunk : int
        Rows per block (a block holds chunk^2 float32 similarities).
    groups : Sequence | np.ndarray | None
        (N,) label per row (e.g. the released pseudonym).
    device : str | torch.device
        Where the blocks are computed, e.g. ``"cuda"``.

    Returns
    -------
    idx : np.ndarray
        (N, k) int64 neighbour indices, most similar first; -1 where fewer than k exist.
    sims : np.ndarray
        (N, k) float32 cosine similarities; -inf where ``idx`` is -1. Ties keep no defined order.

    Raises
    ------
    InputError
        If ``emb`` is not a finite 2-D array, or ``k`` or ``chunk`` is below 1.
    """
    x = np.asarray(emb, dtype=np.float32)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise InputError(f"embeddings must be a finite (N, D) array, got shape {x.shape}.")
    if k < 1 or chunk < 1:
        raise InputError(f"k and chunk must be >= 1, got k={k}, chunk={chunk}.")
    n = len(x)
    codes = _codes(groups, n)
    # Sorting by group puts same-group pairs in few blocks, so most blocks need no mask.
    order = np.argsort(codes, kind="stable")
    codes_t = torch.from_numpy(codes[order]).to(device)
    xs = torch.from_numpy(x[order]).to(device)
    xs = xs / xs.norm(dim=1, keepdim=True).clamp(min=1e-12)
    best_v = torch.full((n, k), -torch.inf, device=device)
    best_i = torch.full((n, k), -1, dtype=torch.int64, device=device)
    for a in range(0, n, chunk):
        ae = min(a + chunk, n)
        for b in range(a, n, chunk):
            be = min(b + chunk, n)
            sims = xs[a:ae] @ xs[b:be].T
            if codes_t[ae - 1] >= codes_t[b]:  # the two blocks share a group
                sims.masked_fill_(codes_t[a:ae, None] == codes_t[None, b:be], -torch.inf)
            _merge(best_v[a:ae], best_i[a:ae], sims, b, k)
            if b != a:
                _merge(best_v[b:be], best_i[b:be], sims.T, a, k)
    best_v, best_i = best_v.cpu().numpy(), best_i.cpu().numpy()
    idx = np.empty((n, k), dtype=np.int64)
    sims_out = np.empty((n, k), dtype=np.float32)
    idx[order] = np.where(np.isinf(best_v), -1, order[np.maximum(best_i, 0)])
    sims_out[order] = best_v
    return idx, sims_out


def _components(n: int, edges_a: np.ndarray, edges_b: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(edges_a)), (edges_a, edges_b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def linkage_risk(
    emb: np.ndarray,
    calibrator: Calibrator,
    pseudonyms: Sequence[str] | None,
    threshold: float = 0.5,
    *,
    k: int = 10,
    chunk: int = 4096,
    link_probability: float = 0.5,
    device: str | torch.device = "cpu",
) -> dict:
    """Per-image linkage risk and release-level summary.

    An image's risk is the highest calibrated P(same patient) to any image released under a
    different pseudonym (to any other image when ``pseudonyms`` is None): how surely an attacker
    can tie it to another record of the same person.

    The distinct-patient estimate counts the connected components of a graph whose edges are the
    top-k links with P(same patient) > ``link_probability`` plus, when given, the release's own
    claim that images under one pseudonym are one patient. Components chain (single linkage), so
    the estimate is a lower bound when false links occur.

    Parameters
    ----------
    emb : np.ndarray
        (N, D) re-identifier embeddings of the released images.
    calibrator : Calibrator
        Fitted similarity -> P(same patient) map (from the checkpoint).
    pseudonyms : Sequence[str] | None
        (N,) released patient pseudonym per image, or None when the release carries no IDs.
    threshold : float
        Risk at or above which a record counts as at risk.
    k : int
        Neighbours searched per image.
    chunk : int
        Block size of the search (see :func:`topk_neighbours`).
    link_probability : float
        P(same patient) above which a link joins two images in the patient estimate.
    device : str | torch.device
        Where the neighbour search runs.

    Returns
    -------
    dict
        ``summary`` (JSON-able): ``n_records``, ``threshold``, ``records_at_risk``,
        ``share_at_risk``, ``highest_risk``, ``average_risk`` (the average success rate of an
        attacker who links every image to its strongest link), ``estimated_patients``,
        ``claimed_patients`` (distinct pseudonyms; None without pseudonyms),
        ``linked_pseudonym_pairs``, ``k``, ``link_probability``, ``estimator``.
        ``per_record``: numpy arrays ``risk`` (N,), ``link`` (N,) index of the strongest link
        (-1 if none), ``similarity`` (N,) its cosine, ``cluster`` (N,) component label.

    Raises
    ------
    InputError
        If the inputs are malformed or a probability is outside [0, 1].
    """
    for name, value in (("threshold", threshold), ("link_probability", link_probability)):
        if not 0.0 <= value <= 1.0:
            raise InputError(f"{name} must be in [0, 1], got {value}.")
    n = len(emb)
    if n == 0:
        raise InputError("the release holds no images to score.")
    codes = _codes(pseudonyms, n)
    idx, sims = topk_neighbours(
        emb, k, chunk, groups=None if pseudonyms is None else codes, device=device
    )
    valid = idx >= 0
    probs = np.where(valid, calibrator.predict(np.where(valid, sims, 0.0)), -1.0)
    best = probs.argmax(axis=1)  # the top similarity, unless the calibrator is not monotone
    rows = np.arange(n)
    risk = np.maximum(probs[rows, best], 0.0)
    link = idx[rows, best]
    strong = valid & (probs > link_probability)
    a, b = np.repeat(rows, k)[strong.ravel()], idx[strong]
    linked_pairs = None
    if pseudonyms is not None:
        linked_pairs = len(np.unique(np.sort(np.c_[codes[a], codes[b]], axis=1), axis=0))
        # The release's own claim: images under one pseudonym are one patient.
        first = np.unique(codes, return_index=True)[1]
        a, b = np.r_[a, rows], np.r_[b, first[codes]]
    cluster = _components(n, a, b)
    at_risk = int((risk >= threshold).sum())
    summary = {
        "n_records": n,
        "threshold": float(threshold),
        "records_at_risk": at_risk,
        "share_at_risk": at_risk / n,
        "highest_risk": float(risk.max()),
        "average_risk": float(risk.mean()),
        "estimated_patients": int(cluster.max()) + 1,
        "claimed_patients": None if pseudonyms is None else int(codes.max()) + 1,
        "linked_pseudonym_pairs": linked_pairs,
        "k": k,
        "link_probability": float(link_probability),
        "estimator": "connected components of top-k links above link_probability",
    }
    per_record = {
        "risk": risk,
        "link": link,
        "similarity": np.where(link >= 0, sims[rows, best], np.nan).astype(np.float32),
        "cluster": cluster,
    }
    return {"summary": summary, "per_record": per_record}
