"""Linkage risk inside a release: how surely can images be tied to the same patient?

Every image is compared with every other by cosine similarity of re-identifier embeddings, in
square blocks (never an N x N matrix), each block computed once for both of its row ranges.
Images under the same released pseudonym are never each other's links (without pseudonyms,
only an image and itself). A calibrator turns similarities into P(same patient); from these
come the ARX-style trio (records at risk, highest risk, average risk) and an estimate of how
many distinct patients the release really holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

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
    return np.unique(arr.astype(str), return_inverse=True)[1].astype(np.int64).reshape(n)


def _unit_rows(emb: np.ndarray) -> np.ndarray:
    x = np.asarray(emb, dtype=np.float32)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise InputError(f"embeddings must be a finite (N, D) array, got shape {x.shape}.")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _blocks(x: np.ndarray, codes: np.ndarray, chunk: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(a, b, sims)`` for row blocks a <= b; ``sims[i, j] = x[a + i] . x[b + j]``.

    ``codes`` must be sorted, so same-code pairs only occur where the code ranges of the two
    blocks overlap; there they are set to -inf. ``sims`` lives in a buffer reused by the next
    block (allocating 64 MB per block costs about as much as the product itself).
    """
    n = len(x)
    xt = torch.from_numpy(x)
    size = min(chunk, n)
    buffer = torch.empty(size * size)
    for a in range(0, n, chunk):
        ae = min(a + chunk, n)
        for b in range(a, n, chunk):
            be = min(b + chunk, n)
            out = buffer[: (ae - a) * (be - b)].view(ae - a, be - b)
            torch.mm(xt[a:ae], xt[b:be].T, out=out)
            sims = out.numpy()
            if codes[ae - 1] >= codes[b]:
                sims[codes[a:ae, None] == codes[None, b:be]] = -np.inf
            yield a, b, sims


class _Top1:
    """Running most-similar neighbour of every row (numpy reductions are the fast path here)."""

    def __init__(self, n: int) -> None:
        self.sim = np.full(n, -np.inf, dtype=np.float32)
        self.idx = np.full(n, -1, dtype=np.int64)

    def update(self, a: int, b: int, sims: np.ndarray) -> np.ndarray:
        """Fold in a block; returns the block's row maxima."""
        arg = sims.argmax(axis=1)
        row_max = sims[np.arange(len(sims)), arg]
        self._improve(a, row_max, lambda sel: arg[sel] + b)
        if b != a:
            # numpy's argmax along axis 0 is slow: take it only for the improved columns
            self._improve(b, sims.max(axis=0), lambda sel: sims[:, sel].argmax(axis=0) + a)
        return row_max

    def _improve(
        self, start: int, best: np.ndarray, where: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        sel = np.flatnonzero(best > self.sim[start : start + len(best)])
        self.sim[start + sel] = best[sel]
        self.idx[start + sel] = where(sel)


class _TopK:
    """Running k most similar neighbours of every row."""

    def __init__(self, n: int, k: int) -> None:
        self.k = k
        self.sim = torch.full((n, k), -torch.inf)
        self.idx = torch.full((n, k), -1, dtype=torch.int64)

    def update(self, a: int, b: int, sims: np.ndarray) -> None:
        self._fold(a, torch.from_numpy(sims), b)
        if b != a:
            self._fold(b, torch.from_numpy(np.ascontiguousarray(sims.T)), a)

    def _fold(self, start: int, sims: torch.Tensor, offset: int) -> None:
        rows = slice(start, start + sims.shape[0])
        v, i = torch.topk(sims, min(self.k, sims.shape[1]), dim=1)
        all_v = torch.cat([self.sim[rows], v], dim=1)
        all_i = torch.cat([self.idx[rows], i + offset], dim=1)
        top_v, pos = torch.topk(all_v, self.k, dim=1)
        self.sim[rows] = top_v
        self.idx[rows] = torch.gather(all_i, 1, pos)


def _sorted_by_code(
    emb: np.ndarray, groups: Sequence | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _unit_rows(emb)
    codes = _codes(groups, len(x))
    order = np.argsort(codes, kind="stable")
    return np.ascontiguousarray(x[order]), codes[order], order


def _unsort(order: np.ndarray, idx: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, ...]:
    """Back from code order to input order; missing neighbours become -1 / -inf."""
    out_idx = np.empty_like(idx)
    out_sims = np.empty_like(sims)
    out_idx[order] = np.where(np.isneginf(sims), -1, order[np.maximum(idx, 0)])
    out_sims[order] = sims
    return out_idx, out_sims


def topk_neighbours(
    emb: np.ndarray,
    k: int,
    chunk: int = 4096,
    *,
    groups: Sequence | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k neighbours of every row, computed block by block.

    Memory is O(chunk^2 + N k) and time O(N^2 D / 2); float32 on the CPU with torch's current
    thread count for the products. Rows sharing a ``groups`` value are never neighbours; with
    ``groups=None`` only the row itself is excluded.

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
    if k < 1 or chunk < 1:
        raise InputError(f"k and chunk must be >= 1, got k={k}, chunk={chunk}.")
    x, codes, order = _sorted_by_code(emb, groups)
    best: _Top1 | _TopK = _Top1(len(x)) if k == 1 else _TopK(len(x), k)
    for a, b, sims in _blocks(x, codes, chunk):
        best.update(a, b, sims)
    if isinstance(best, _Top1):
        return _unsort(order, best.idx[:, None], best.sim[:, None])
    return _unsort(order, best.idx.numpy(), best.sim.numpy())


def _link_floor(calibrator: Calibrator, p: float) -> float:
    """A similarity below which P(same patient) never exceeds ``p`` (+inf if nothing does).

    Checked on a fine grid of cosines, which also rejects a calibrator that is not monotone.
    """
    grid = np.linspace(-1.0, 1.0, 4001)
    prob = calibrator.predict(grid)
    if np.any(np.diff(prob) < -1e-12):
        raise InputError(
            "the calibrator gives lower P(same patient) to more similar images; re-calibrate on "
            "validation pairs of this model."
        )
    above = np.flatnonzero(prob > p)
    if len(above) == 0:
        return np.inf
    return -np.inf if above[0] == 0 else float(grid[above[0] - 1])


class _Components:
    """Connected components over streamed edges; memory stays O(N) by folding edges into stars."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.a: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        self.count = 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a.append(a)
        self.b.append(b)
        self.count += len(a)
        if self.count > 4 * self.n:
            labels = self.labels()
            first = np.unique(labels, return_index=True)[1]
            self.a, self.b, self.count = [np.arange(self.n)], [first[labels]], self.n

    def labels(self) -> np.ndarray:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        a = np.concatenate(self.a) if self.a else np.empty(0, np.int64)
        b = np.concatenate(self.b) if self.b else np.empty(0, np.int64)
        graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(self.n, self.n))
        return connected_components(graph, directed=False)[1]


def linkage_risk(
    emb: np.ndarray,
    calibrator: Calibrator,
    pseudonyms: Sequence[str] | None,
    threshold: float = 0.5,
    *,
    chunk: int = 4096,
    link_probability: float = 0.5,
) -> dict:
    """Per-image linkage risk and release-level summary.

    An image's risk is the highest calibrated P(same patient) to any image released under a
    different pseudonym (to any other image when ``pseudonyms`` is None): how surely an attacker
    can tie it to another record of the same person.

    The distinct-patient estimate counts connected components (single linkage) of the graph
    whose edges are all links with P(same patient) > ``link_probability`` plus, when given, the
    release's own claim that images under one pseudonym are one patient. Chaining makes it a
    lower bound when false links occur; a release that wrongly merged two patients under one
    pseudonym is not detected by it.

    Parameters
    ----------
    emb : np.ndarray
        (N, D) re-identifier embeddings of the released images.
    calibrator : Calibrator
        Fitted, non-decreasing similarity -> P(same patient) map (from the checkpoint).
    pseudonyms : Sequence[str] | None
        (N,) released patient pseudonym per image, or None when the release carries no IDs.
    threshold : float
        Risk at or above which a record counts as at risk.
    chunk : int
        Block size of the search (see :func:`topk_neighbours`).
    link_probability : float
        P(same patient) above which a link joins two images in the patient estimate.

    Returns
    -------
    dict
        ``summary`` (JSON-able): ``n_records``, ``threshold``, ``records_at_risk``,
        ``share_at_risk``, ``highest_risk``, ``average_risk`` (the average success rate of an
        attacker who links every image to its strongest link), ``estimated_patients``,
        ``claimed_patients`` (distinct pseudonyms; None without pseudonyms),
        ``linked_pseudonym_pairs`` (pseudonym pairs joined by a link above
        ``link_probability``; None without pseudonyms), ``link_probability``, ``estimator``.
        ``per_record``: numpy arrays ``risk`` (N,), ``link`` (N,) index of the strongest link
        (-1 if none), ``similarity`` (N,) its cosine (NaN if none), ``cluster`` (N,) component.

    Raises
    ------
    InputError
        If the inputs are malformed, a probability is outside [0, 1], or the calibrator is
        not monotone.
    """
    for name, value in (("threshold", threshold), ("link_probability", link_probability)):
        if not 0.0 <= value <= 1.0:
            raise InputError(f"{name} must be in [0, 1], got {value}.")
    if chunk < 1:
        raise InputError(f"chunk must be >= 1, got {chunk}.")
    n = len(emb)
    if n == 0:
        raise InputError("the release holds no images to score.")
    floor = _link_floor(calibrator, link_probability)
    x, codes, order = _sorted_by_code(emb, pseudonyms)
    best, graph = _Top1(n), _Components(n)
    pairs: list[np.ndarray] = []
    for a, b, sims in _blocks(x, codes, chunk):
        rows = np.flatnonzero(best.update(a, b, sims) > floor)  # few rows hold candidate links
        if len(rows):
            i, j = np.nonzero(sims[rows] > floor)
            keep = calibrator.predict(sims[rows[i], j]) > link_probability
            ea, eb = rows[i[keep]] + a, j[keep] + b
            graph.add(ea, eb)
            if pseudonyms is not None:
                pairs.append(np.unique(np.sort(np.c_[codes[ea], codes[eb]], axis=1), axis=0))
    if pseudonyms is not None:  # the release's claim: one pseudonym, one patient
        first = np.unique(codes, return_index=True)[1]
        graph.add(np.arange(n), first[codes])
    link, sim = (v[:, 0] for v in _unsort(order, best.idx[:, None], best.sim[:, None]))
    risk = np.where(link >= 0, calibrator.predict(np.where(link >= 0, sim, 0.0)), 0.0)
    cluster = np.empty(n, dtype=np.int64)
    cluster[order] = graph.labels()
    at_risk = int((risk >= threshold).sum())
    linked_pairs = None
    if pseudonyms is not None:
        linked_pairs = len(np.unique(np.concatenate(pairs), axis=0)) if pairs else 0
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
        "link_probability": float(link_probability),
        "estimator": "connected components of all links above link_probability",
    }
    per_record = {
        "risk": risk,
        "link": link,
        "similarity": np.where(link >= 0, sim, np.nan).astype(np.float32),
        "cluster": cluster,
    }
    return {"summary": summary, "per_record": per_record}
