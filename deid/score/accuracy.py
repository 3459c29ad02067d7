"""Re-identification accuracy with the answer key, per dataset and overall.

Same protocol as ``deid evaluate``: within each dataset the earliest visit of each patient is
its query and the other visits are the gallery, so rank-1 here equals rank-1 there on the same
images and checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deid.errors import InputError
from deid.report.schema import GroupMetrics, Truth
from deid.score.truth import Label

SIMILARITY_EDGES = np.linspace(-1.0, 1.0, 51).tolist()
# the CMC figure needs the full query x gallery ranking; above this many pairs it uses ranks 1/5/10
FULL_CMC_PAIRS = 5_000_000
_CHUNK = 2048


def query_mask(labels: Sequence[Label]) -> np.ndarray:
    """True for the records of one query visit per (dataset, patient).

    The visit is the one the shared protocol picks (``reid_model.phantoms.protocol.
    query_gallery``, which ``deid evaluate`` uses too), so both report the same rank-1 on the
    same images. Every record of that visit is a query (e.g. two views); patients seen at a single
    visit have no query and stay in the gallery as distractors.
    """
    from reid_model.phantoms.protocol import query_gallery

    mask = np.zeros(len(labels), dtype=bool)
    for dataset in sorted({label.dataset for label in labels}):
        rows = [i for i, label in enumerate(labels) if label.dataset == dataset]
        visits = sorted({(labels[i].patient, labels[i].visit) for i in rows})
        chosen = {visits[j] for j in query_gallery(visits).query}
        for i in rows:
            mask[i] = (labels[i].patient, labels[i].visit) in chosen
    return mask


def _pair_histograms(
    emb: np.ndarray, pids: np.ndarray, is_query: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of query-gallery cosine similarity, same vs different patient, chunked."""
    same = np.zeros(len(SIMILARITY_EDGES) - 1, dtype=np.int64)
    diff = np.zeros_like(same)
    for group in np.unique(groups):
        q = np.flatnonzero(is_query & (groups == group))
        g = np.flatnonzero(~is_query & (groups == group))
        for start in range(0, len(q), _CHUNK):
            rows = q[start : start + _CHUNK]
            sim = np.clip(emb[rows] @ emb[g].T, -1.0, 1.0)
            match = pids[rows][:, None] == pids[g][None, :]
            same += np.histogram(sim[match], SIMILARITY_EDGES)[0]
            diff += np.histogram(sim[~match], SIMILARITY_EDGES)[0]
    return same, diff


def _cmc(
    emb: np.ndarray, pids: np.ndarray, is_query: np.ndarray, metrics: dict
) -> tuple[list[int], list[float]]:
    from reid_model.metrics import cmc_map

    q, g = np.flatnonzero(is_query), np.flatnonzero(~is_query)
    if len(q) * len(g) > FULL_CMC_PAIRS:
        return [1, 5, 10], [metrics["rank1"], metrics["rank5"], metrics["rank10"]]
    curve, _, _ = cmc_map(1.0 - emb[q] @ emb[g].T, pids[q], pids[g], max_rank=10)
    return list(range(1, len(curve) + 1)), [float(v) for v in curve]


def _group_metrics(
    emb: np.ndarray, pids: np.ndarray, is_query: np.ndarray, n_boot: int, rng: np.random.Generator
) -> GroupMetrics:
    from reid_model.metrics import evaluate_retrieval

    m = evaluate_retrieval(emb, pids, is_query, None, n_boot=max(n_boot, 1), rng=rng)["overall"]
    ci = (
        {
            k: {"low": float(v[0]), "high": float(v[1])}
            for k, v in m["ci95"].items()
            if np.isfinite(v).all()
        }
        if n_boot > 0
        else {}
    )
    if "tar_at_far" in ci:
        ci["tar_at_far_1e3"] = ci.pop("tar_at_far")
    cmc_ranks, cmc = _cmc(emb, pids, is_query, m)
    return {
        "n_images": len(emb),
        "n_patients": len(set(pids.tolist())),
        "n_queries": int(m["n_queries"] - m["n_queries_without_match"]),
        "rank1": float(m["rank1"]),
        "rank5": float(m["rank5"]),
        "mAP": float(m["mAP"]),
        "auc": float(m["auc"]),
        "tar_at_far_1e3": float(m["tar_at_far"]),
        "ci": ci,
        "cmc_ranks": cmc_ranks,
        "cmc": cmc,
        "roc_fpr": [float(v) for v in m["roc"]["fpr"]],
        "roc_tpr": [float(v) for v in m["roc"]["tpr"]],
    }


def truth_metrics(
    emb: np.ndarray,
    labels: Sequence[Label | None],
    *,
    source: str,
    n_boot: int,
    rng: np.random.Generator,
) -> Truth:
    """Accuracy of the re-identifier on the labelled records.

    Parameters
    ----------
    emb : np.ndarray
        (N, E) L2-normalised embeddings of the release's records.
    labels : sequence of Label or None
        Index-aligned with ``emb``; None for records the truth does not name.
    source : str
        Where the labels came from, for the report.
    n_boot : int
        Bootstrap resamples of patients for the 95% intervals (0: none).
    rng : np.random.Generator
        Randomness of the bootstrap.

    Returns
    -------
    Truth
        The report section; groups where accuracy cannot be measured (e.g. one visit per
        patient) are listed in ``not_measured`` with the reason.
    """
    keep = [i for i, label in enumerate(labels) if label is not None]
    named = [labels[i] for i in keep]
    if not named:
        raise InputError(
            "the truth names none of the readable images of the release; pass the truth CSV "
            "that belongs to this release"
        )
    sub = emb[keep]
    pids = np.array([label.patient for label in named])
    groups = np.array([label.dataset for label in named])
    is_query = query_mask(named)
    results: dict[str, GroupMetrics] = {}
    not_measured: dict[str, str] = {}
    for name in ["all", *sorted(set(groups.tolist()))]:
        mask = np.ones(len(sub), dtype=bool) if name == "all" else groups == name
        try:
            results[name] = _group_metrics(sub[mask], pids[mask], is_query[mask], n_boot, rng)
        except InputError as exc:
            not_measured[name] = str(exc)
    same, diff = _pair_histograms(sub, pids, is_query, groups)
    section: Truth = {
        "source": source,
        "n_matched": len(keep),
        "groups": results,
        "not_measured": not_measured,
        "similarity_same": {"edges": SIMILARITY_EDGES, "counts": same.tolist()},
        "similarity_different": {"edges": SIMILARITY_EDGES, "counts": diff.tolist()},
    }
    return section
