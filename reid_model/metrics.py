"""Re-identification metrics in numpy: CMC / mAP retrieval, verification ROC, bootstrap intervals.

Protocol: each query image is searched in a gallery that holds the other visits; a query whose
patient has no gallery image cannot be ranked and is excluded from CMC and mAP (and counted).
Equal distances are ranked by gallery index (stable sort), so results are deterministic.
Intervals resample query *patients* with replacement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from deid.errors import InputError

RANKS = (1, 5, 10)


def _ranked_hits(
    dist: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First-hit position (0-based, -1 if none) and average precision (NaN if none) per row."""
    order = np.argsort(dist, axis=1, kind="stable")
    hits = g_pids[order] == q_pids[:, None]
    n_hits = hits.sum(axis=1)
    first = np.where(n_hits > 0, hits.argmax(axis=1), -1)
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (precision * hits).sum(axis=1) / n_hits
    return first, ap


def _check_pids(
    q_pids: Sequence, g_pids: Sequence, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    q, g = np.asarray(q_pids), np.asarray(g_pids)
    if q.shape != (shape[0],) or g.shape != (shape[1],):
        raise InputError(
            f"distances are {shape} but there are {q.shape} query and {g.shape} gallery labels."
        )
    return q, g


def _summarise(
    first: np.ndarray, ap: np.ndarray, max_rank: int
) -> tuple[np.ndarray, float, np.ndarray]:
    valid = first >= 0
    if not valid.any():
        raise InputError(
            "no query has an image of the same patient in the gallery; check the query/gallery "
            "split (each query patient needs at least one other visit)."
        )
    cmc = np.array([(first[valid] < r).mean() for r in range(1, max_rank + 1)])
    return cmc, float(ap[valid].mean()), ap


def cmc_map(
    distmat: np.ndarray, q_pids: Sequence, g_pids: Sequence, max_rank: int = 10
) -> tuple[np.ndarray, float, np.ndarray]:
    """CMC curve and mean average precision from a query x gallery distance matrix.

    Parameters
    ----------
    distmat : np.ndarray
        (Q, G) distances, smaller is closer.
    q_pids, g_pids : Sequence
        Patient label of each query and gallery item.
    max_rank : int
        Length of the CMC curve.

    Returns
    -------
    cmc : np.ndarray
        (max_rank,) share of valid queries whose first match is within rank r = 1..max_rank.
    mAP : float
        Mean of the per-query AP over valid queries.
    ap : np.ndarray
        (Q,) per-query AP; NaN marks a query without a gallery match (excluded; count them with
        ``np.isnan(ap).sum()``).

    Raises
    ------
    InputError
        If shapes disagree, ``max_rank < 1`` or no query has a match.
    """
    distmat = np.asarray(distmat)
    if max_rank < 1:
        raise InputError(f"max_rank must be >= 1, got {max_rank}.")
    if distmat.ndim != 2:
        raise InputError(f"distmat must be 2-D (queries x gallery), got shape {distmat.shape}.")
    q, g = _check_pids(q_pids, g_pids, distmat.shape)
    rows = max(1, 2**22 // max(1, distmat.shape[1]))  # bounds the argsort index memory
    parts = [
        _ranked_hits(distmat[s : s + rows], q[s : s + rows], g) for s in range(0, len(q), rows)
    ]
    first = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, int)
    ap = np.concatenate([p[1] for p in parts]) if parts else np.empty(0)
    return _summarise(first, ap, max_rank)


def roc_points(
    scores: np.ndarray, same: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted ROC curve with tied scores merged into one point.

    Returns ``(fpr, tpr, thresholds)`` from threshold +inf (0, 0) down to the lowest score
    (1, 1), where a pair is accepted when ``score >= threshold``. Equal to scikit-learn's
    ``roc_curve(..., drop_intermediate=False)``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    ranked = _RankedPairs(scores, same)
    return ranked.roc(w[ranked.order])


class _RankedPairs:
    """Pairs sorted by descending score, ready for repeated weighted ROC computations."""

    def __init__(self, scores: np.ndarray, same: np.ndarray) -> None:
        self.order = np.argsort(-scores, kind="stable")
        ranked = scores[self.order]
        self.same = same[self.order]
        # last position of each run of equal scores: one ROC point per distinct threshold
        self.ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
        self.thresholds = np.r_[np.inf, ranked[self.ends]]

    def roc(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(fpr, tpr, thresholds)`` for weights ``w`` given in ranked order."""
        tp = np.cumsum(w * self.same)[self.ends]
        fp = np.cumsum(w)[self.ends] - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr = np.r_[0.0, tp / tp[-1]]
            fpr = np.r_[0.0, fp / fp[-1]]
        return fpr, tpr, self.thresholds


def auc_from_roc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Trapezoidal area under the ROC curve (ties count one half, as Mann-Whitney)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def tar_at_far_from_roc(
    fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray, far: float
) -> tuple[float, float]:
    """True accept rate at a false accept rate, without interpolation.

    The operating point is the highest TPR among ROC points whose FPR does not exceed ``far``
    (a threshold one could really set); returns ``(tar, threshold)``.
    """
    ok = fpr <= far
    best = int(np.flatnonzero(ok)[np.argmax(tpr[ok])])
    return float(tpr[best]), float(thresholds[best])


def _check_binary(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if scores.shape != same.shape or scores.ndim != 1:
        raise InputError(f"scores {scores.shape} and labels {same.shape} must be equal 1-D.")
    if same.all() or not same.any():
        raise InputError(
            "verification needs both same-patient and different-patient pairs; the gallery "
            "must hold other visits of the query patients and other patients."
        )
    return scores, same


def verification_metrics(
    scores: np.ndarray, same: np.ndarray, far: float = 1e-3, max_points: int = 201
) -> dict:
    """ROC AUC and TAR at a fixed FAR for same-patient verification.

    Parameters
    ----------
    scores : np.ndarray
        (P,) similarity of each pair, larger means more alike.
    same : np.ndarray
        (P,) True where both images show the same patient.
    far : float
        Target false accept rate (see :func:`tar_at_far_from_roc` for the rule).
    max_points : int
        The returned ROC curve is thinned to at most this many points for reports.

    Returns
    -------
    dict
        ``auc``, ``tar_at_far``, ``far``, ``threshold``, ``n_positive``, ``n_negative``,
        ``far_resolved`` (False when there are fewer than ``1 / far`` negatives, so the
        operating point sits at a coarser FAR) and ``roc`` (``fpr``, ``tpr`` lists). JSON-able.

    Raises
    ------
    InputError
        If shapes disagree or one class is missing.
    """
    scores, same = _check_binary(scores, same)
    fpr, tpr, thr = roc_points(scores, same)
    tar, threshold = tar_at_far_from_roc(fpr, tpr, thr, far)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
    n_neg = int((~same).sum())
    return {
        "auc": auc_from_roc(fpr, tpr),
        "tar_at_far": tar,
        "far": far,
        "threshold": threshold,
        "n_positive": int(same.sum()),
        "n_negative": n_neg,
        "far_resolved": n_neg * far >= 1,
        "roc": {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()},
    }


def _bootstrap_bounds(
    statistic: Callable[[np.ndarray], np.ndarray | float],
    n_units: int,
    n_boot: int,
    rng: np.random.Generator,
    level: float,
) -> tuple[np.ndarray, np.ndarray]:
    if n_units < 1 or n_boot < 1 or not 0 < level < 1:
        raise InputError(
            f"bootstrap needs n_units >= 1, n_boot >= 1 and 0 < level < 1; got {n_units}, "
            f"{n_boot}, {level}."
        )
    stats = np.array(
        [
            np.atleast_1d(
                statistic(np.bincount(rng.integers(0, n_units, n_units), minlength=n_units))
            )
            for _ in range(n_boot)
        ],
        dtype=np.float64,
    )
    tail = (1 - level) / 2 * 100
    with np.errstate(all="ignore"):  # all-NaN columns give NaN bounds
        low, high = np.nanpercentile(stats, [tail, 100 - tail], axis=0)
    return low, high


def bootstrap_statistic(
    statistic: Callable[[np.ndarray], float],
    n_units: int,
    n_boot: int,
    rng: np.random.Generator,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic of resampled units (patients).

    Parameters
    ----------
    statistic : Callable[[np.ndarray], float]
        Receives (n_units,) resampling counts (how often each unit was drawn) and returns the
        statistic of that resample; NaN results are ignored.
    n_units : int
        Number of units to resample with replacement.
    n_boot : int
        Number of resamples.
    rng : np.random.Generator
        Source of randomness.
    level : float
        Coverage of the interval.

    Returns
    -------
    tuple[float, float]
        Lower and upper bound (NaN, NaN if every resample gave NaN).

    Raises
    ------
    InputError
        If a count is below 1 or ``level`` is outside (0, 1).
    """
    low, high = _bootstrap_bounds(statistic, n_units, n_boot, rng, level)
    return float(low[0]), float(high[0])


def bootstrap_ci(
    values: np.ndarray, n_boot: int, rng: np.random.Generator, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-patient values.

    Parameters
    ----------
    values : np.ndarray
        (n_patients,) one value per patient (e.g. rank-1 hit or AP of its query).
    n_boot, rng, level
        As in :func:`bootstrap_statistic`.

    Returns
    -------
    tuple[float, float]
        Lower and upper bound.
    """
    values = np.asarray(values, dtype=np.float64)
    return bootstrap_statistic(
        lambda c: float(c @ values / c.sum()), len(values), n_boot, rng, level
    )


def _scan(
    q_emb: np.ndarray,
    g_emb: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    max_negatives: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, ...]:
    """Rank every query and collect verification pairs, one block of queries at a time."""
    g_labels, g_counts = np.unique(g_pids, return_counts=True)
    pos_per_query = np.zeros(len(q_pids), dtype=np.int64)
    found = np.isin(q_pids, g_labels)
    pos_per_query[found] = g_counts[np.searchsorted(g_labels, q_pids[found])]
    n_neg = len(q_pids) * len(g_pids) - int(pos_per_query.sum())
    keep = 1.0 if n_neg <= max_negatives else max_negatives / n_neg
    rows = max(1, 2**20 // max(1, len(g_pids)))
    firsts, aps, scores, same, owner = [], [], [], [], []
    for s in range(0, len(q_pids), rows):
        sim = q_emb[s : s + rows] @ g_emb.T
        first, ap = _ranked_hits(-sim, q_pids[s : s + rows], g_pids)
        hit = g_pids[None, :] == q_pids[s : s + rows, None]
        take = np.ones_like(hit)
        if keep < 1:  # negatives beyond the cap: each kept independently with probability keep
            take = hit | (rng.random(sim.shape) < keep)
        r, _ = np.nonzero(take)
        firsts.append(first)
        aps.append(ap)
        scores.append(sim[take])
        same.append(hit[take])
        owner.append(r + s)
    cat = np.concatenate
    return cat(firsts), cat(aps), cat(scores), cat(same), cat(owner), n_neg > max_negatives


def _evaluate_set(
    q_emb: np.ndarray,
    g_emb: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
    far: float,
    max_negatives: int,
) -> dict:
    first, ap, scores, same, owner, subsampled = _scan(
        q_emb, g_emb, q_pids, g_pids, max_negatives, rng
    )
    valid = first >= 0
    cmc, mean_ap, _ = _summarise(first, ap, max(RANKS))
    ver = verification_metrics(scores, same, far)
    _, unit = np.unique(q_pids, return_inverse=True)
    n_units = int(unit.max()) + 1
    per_query = np.stack([(first >= 0) & (first < r) for r in RANKS] + [np.nan_to_num(ap)], 1)
    ranked = _RankedPairs(scores, same)
    pair_unit = unit[owner][ranked.order]

    def statistic(counts: np.ndarray) -> np.ndarray:
        wq = counts[unit] * valid
        retrieval = wq @ per_query / wq.sum() if wq.sum() else np.full(per_query.shape[1], np.nan)
        fpr, tpr, thr = ranked.roc(counts[pair_unit].astype(np.float64))
        if np.isnan(tpr[-1]) or np.isnan(fpr[-1]):
            return np.concatenate([retrieval, [np.nan, np.nan]])
        tar = tar_at_far_from_roc(fpr, tpr, thr, far)[0]
        return np.concatenate([retrieval, [auc_from_roc(fpr, tpr), tar]])

    names = [f"rank{r}" for r in RANKS] + ["mAP", "auc", "tar_at_far"]
    low, high = _bootstrap_bounds(statistic, n_units, n_boot, rng, 0.95)
    values = [float(cmc[r - 1]) for r in RANKS] + [mean_ap, ver["auc"], ver["tar_at_far"]]
    out: dict = {
        "n_queries": len(q_pids),
        "n_gallery": len(g_pids),
        "n_query_patients": n_units,
        "n_queries_without_match": int((~valid).sum()),
        **dict(zip(names, values, strict=True)),
        "ci95": {n: [float(lo), float(hi)] for n, lo, hi in zip(names, low, high, strict=True)},
        "negatives_subsampled": bool(subsampled),
    }
    out.update({k: v for k, v in ver.items() if k not in ("auc", "tar_at_far")})
    return out


def _unit_rows(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float32)
    return emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)


def verification_pairs(
    emb: np.ndarray,
    pids: Sequence,
    is_query: np.ndarray,
    *,
    max_negatives: int = 200_000,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity and same-patient label of query-gallery pairs, e.g. to fit a Calibrator.

    Same pairs as :func:`evaluate_retrieval` uses: every query against every gallery image, all
    same-patient pairs, different-patient pairs subsampled beyond ``max_negatives``.

    Returns
    -------
    scores, same : np.ndarray
        (P,) float32 similarities and (P,) bool labels.

    Raises
    ------
    InputError
        If shapes disagree or there is no query or no gallery image.
    """
    emb, pids, is_query = _check_sets(emb, pids, is_query)
    if not is_query.any() or is_query.all():
        raise InputError("need at least one query and one gallery image to form pairs.")
    rng = np.random.default_rng(0) if rng is None else rng
    out = _scan(emb[is_query], emb[~is_query], pids[is_query], pids[~is_query], max_negatives, rng)
    return out[2], out[3]


def _check_sets(
    emb: np.ndarray, pids: Sequence, is_query: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    emb = np.asarray(emb)
    pids = np.asarray(pids)
    is_query = np.asarray(is_query, dtype=bool)
    if emb.ndim != 2 or pids.shape != (len(emb),) or is_query.shape != (len(emb),):
        raise InputError(
            f"emb must be (N, E) with N labels and N query flags; got {emb.shape}, "
            f"{pids.shape}, {is_query.shape}."
        )
    return _unit_rows(emb), pids, is_query


def evaluate_retrieval(
    emb: np.ndarray,
    pids: Sequence,
    is_query: np.ndarray,
    groups: Sequence | None = None,
    n_boot: int = 1000,
    rng: np.random.Generator | None = None,
    *,
    far: float = 1e-3,
    max_negatives: int = 200_000,
) -> dict:
    """Retrieval and verification metrics with 95 % patient-bootstrap intervals.

    Embeddings are compared by cosine similarity. Queries are the rows with ``is_query``, the
    gallery all other rows of the same set. Verification uses every query-gallery pair; when
    there are more than ``max_negatives`` different-patient pairs, each is kept with probability
    ``max_negatives / n_negatives`` (drawn from ``rng``), all same-patient pairs are kept.

    Parameters
    ----------
    emb : np.ndarray
        (N, E) embeddings (normalised here).
    pids : Sequence
        (N,) patient labels.
    is_query : np.ndarray
        (N,) True for query images (one visit per patient).
    groups : Sequence | None
        (N,) dataset/modality name of each image; metrics are reported per group (query and
        gallery restricted to the group) and overall (all queries against all gallery images).
    n_boot : int
        Bootstrap resamples of query patients.
    rng : np.random.Generator | None
        Randomness for the bootstrap and negative subsampling; None means
        ``np.random.default_rng(0)``, so results are reproducible.
    far : float
        False accept rate for TAR@FAR.
    max_negatives : int
        Cap on different-patient verification pairs.

    Returns
    -------
    dict
        JSON-able ``{"overall": metrics, "groups": {name: metrics}}``; ``metrics`` holds
        ``rank1``, ``rank5``, ``rank10``, ``mAP``, ``auc``, ``tar_at_far``, their ``ci95``, the
        counts and the thinned ROC curve (see :func:`verification_metrics`).

    Raises
    ------
    InputError
        If shapes disagree, or a set has no query, no gallery or no matching pair.
    """
    emb, pids, is_query = _check_sets(emb, pids, is_query)
    rng = np.random.default_rng(0) if rng is None else rng
    sets = {"overall": np.ones(len(emb), dtype=bool)}
    group_arr = None if groups is None else np.asarray(groups).astype(str)
    if group_arr is not None:
        if group_arr.shape != pids.shape:
            raise InputError(f"groups has shape {group_arr.shape}, expected {pids.shape}.")
        sets.update({g: group_arr == g for g in sorted(set(group_arr.tolist()))})
    results = {}
    for name, mask in sets.items():
        q, g = mask & is_query, mask & ~is_query
        if not q.any() or not g.any():
            raise InputError(
                f"set {name!r} has {q.sum()} queries and {g.sum()} gallery images; "
                "both must be non-empty."
            )
        try:
            results[name] = _evaluate_set(
                emb[q], emb[g], pids[q], pids[g], n_boot, rng, far, max_negatives
            )
        except InputError as exc:
            raise InputError(f"set {name!r}: {exc}") from exc
    return {"overall": results.pop("overall"), "groups": results}
