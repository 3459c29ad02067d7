import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from deid.errors import InputError
from reid_model.metrics import (
    auc_from_roc,
    bootstrap_ci,
    bootstrap_statistic,
    cmc_map,
    evaluate_retrieval,
    roc_points,
    verification_metrics,
    verification_pairs,
)


def _naive_cmc_map(dist, q, g, max_rank):
    firsts, aps = [], []
    for i in range(len(q)):
        order = sorted(range(len(g)), key=lambda j: (dist[i][j], j))
        hits = [g[j] == q[i] for j in order]
        if not any(hits):
            aps.append(float("nan"))
            continue
        firsts.append(hits.index(True))
        precisions = [sum(hits[: r + 1]) / (r + 1) for r in range(len(hits)) if hits[r]]
        aps.append(sum(precisions) / len(precisions))
    cmc = [sum(f < r for f in firsts) / len(firsts) for r in range(1, max_rank + 1)]
    return np.array(cmc), float(np.nanmean(aps)), np.array(aps)


def test_cmc_map_hand_computed_with_tie_and_unmatched_query():
    dist = np.array(
        [
            [0.2, 0.1, 0.5, 0.9],  # order 1,0,2,3; matches at ranks 2,3 -> AP (1/2 + 2/3)/2
            [0.3, 0.3, 0.1, 0.3],  # tie among 0,1,3 broken by index: order 2,0,1,3; match at 3
            [0.1, 0.2, 0.3, 0.4],  # patient 9 absent from the gallery: excluded
        ]
    )
    cmc, m_ap, ap = cmc_map(dist, [1, 2, 9], [1, 3, 1, 2], max_rank=4)
    np.testing.assert_allclose(ap[:2], [(1 / 2 + 2 / 3) / 2, 1 / 4])
    assert np.isnan(ap[2]) and np.isnan(ap).sum() == 1
    np.testing.assert_allclose(cmc, [0, 0.5, 0.5, 1.0])
    assert m_ap == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 / 4) / 2)


def test_cmc_map_matches_naive_reference_on_random_data():
    rng = np.random.default_rng(0)
    dist = rng.integers(0, 6, size=(30, 40)).astype(float)  # many ties
    q, g = rng.integers(0, 12, 30), rng.integers(0, 10, 40)
    cmc, m_ap, ap = cmc_map(dist, q, g, max_rank=10)
    ref_cmc, ref_map, ref_ap = _naive_cmc_map(dist.tolist(), q.tolist(), g.tolist(), 10)
    np.testing.assert_allclose(cmc, ref_cmc)
    np.testing.assert_allclose(ap, ref_ap)
    assert m_ap == pytest.approx(ref_map)


def test_cmc_map_errors():
    with pytest.raises(InputError, match="no query"):
        cmc_map(np.zeros((2, 2)), [1, 2], [3, 4])
    with pytest.raises(InputError, match="labels"):
        cmc_map(np.zeros((2, 3)), [1, 2], [3, 4])


def test_roc_points_match_sklearn_with_ties_and_weights():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 20, 300) / 20.0
    same = rng.random(300) < 0.3
    w = rng.integers(0, 4, 300).astype(float)
    fpr, tpr, thr = roc_points(scores, same, w)
    ref_fpr, ref_tpr, ref_thr = roc_curve(same, scores, sample_weight=w, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_allclose(thr[1:], ref_thr[1:])
    assert auc_from_roc(fpr, tpr) == pytest.approx(roc_auc_score(same, scores, sample_weight=w))
    assert auc_from_roc(*roc_points(scores, same)[:2]) == pytest.approx(roc_auc_score(same, scores))


def test_verification_tar_at_far_rule():
    # 4 positives, 1000 negatives; one negative scores above two positives.
    neg = np.linspace(0.0, 0.5, 1000)
    neg[-1] = 0.95
    scores = np.r_[[0.99, 0.97, 0.9, 0.3], neg]
    same = np.r_[[True] * 4, [False] * 1000]
    out = verification_metrics(scores, same, far=1e-3)
    # FAR <= 1e-3 allows one false accept: threshold 0.9 accepts 3 of 4 positives.
    assert out["tar_at_far"] == pytest.approx(0.75) and out["threshold"] == pytest.approx(0.9)
    assert out["far_resolved"] and out["n_negative"] == 1000
    assert out["auc"] == pytest.approx(roc_auc_score(same, scores))
    json.dumps(out)
    strict = verification_metrics(scores, same, far=1e-4)  # no false accept allowed
    assert strict["tar_at_far"] == pytest.approx(0.5) and not strict["far_resolved"]
    with pytest.raises(InputError, match="both"):
        verification_metrics(scores[:3], same[:3])


def test_bootstrap_intervals():
    rng = np.random.default_rng(2)
    assert bootstrap_ci(np.full(10, 0.7), 50, rng) == pytest.approx((0.7, 0.7))
    values = rng.random(200)
    a = bootstrap_ci(values, 300, np.random.default_rng(5))
    assert a == bootstrap_ci(values, 300, np.random.default_rng(5))
    assert a[0] < values.mean() < a[1]
    # Standard error of a mean of 200 uniforms is ~0.02: the 95% interval is ~0.08 wide.
    assert 0.05 < a[1] - a[0] < 0.12
    low, high = bootstrap_statistic(lambda c: float(c[0]), 1, 20, rng)
    assert low == high == 1.0
    with pytest.raises(InputError, match="n_boot"):
        bootstrap_ci(values, 0, rng)


def _clustered(n_patients, visits, dim, noise, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_patients, dim))
    pids = np.repeat(np.arange(n_patients), visits)
    emb = centres[pids] + noise * rng.normal(size=(len(pids), dim))
    is_query = np.tile(np.arange(visits) == 0, n_patients)
    return emb, pids, is_query


def test_evaluate_retrieval_perfect_and_random():
    emb, pids, isq = _clustered(40, 3, 16, 0.01, 0)
    groups = np.where(pids % 2 == 0, "cxr", "fundus")
    out = evaluate_retrieval(emb, pids, isq, groups, n_boot=50, rng=np.random.default_rng(0))
    json.dumps(out)
    assert set(out["groups"]) == {"cxr", "fundus"}
    for res in [out["overall"], *out["groups"].values()]:
        for name in ("rank1", "mAP", "auc", "tar_at_far"):
            assert res[name] == pytest.approx(1.0)
            assert res["ci95"][name] == pytest.approx([1.0, 1.0])
    assert out["overall"]["n_queries"] == 40 and out["groups"]["cxr"]["n_gallery"] == 40

    noise, pids, isq = _clustered(60, 3, 16, 100.0, 1)
    res = evaluate_retrieval(noise, pids, isq, n_boot=100)["overall"]
    assert abs(res["auc"] - 0.5) < 0.1 and res["rank1"] < 0.15
    lo, hi = res["ci95"]["auc"]
    assert lo < res["auc"] < hi


def test_evaluate_retrieval_agrees_with_cmc_map_and_counts_unmatched():
    emb, pids, isq = _clustered(30, 2, 8, 1.0, 3)
    isq[-1] = True  # patient 29 now has two queries and no gallery image
    res = evaluate_retrieval(emb, pids, isq, n_boot=20)["overall"]
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cmc, m_ap, ap = cmc_map(1 - e[isq] @ e[~isq].T, pids[isq], pids[~isq])
    assert res["n_queries_without_match"] == 2 == np.isnan(ap).sum()
    assert res["rank1"] == pytest.approx(cmc[0]) and res["rank5"] == pytest.approx(cmc[4])
    assert res["mAP"] == pytest.approx(m_ap, rel=1e-5)
    assert res["n_query_patients"] == 30


def test_evaluate_retrieval_caps_negatives():
    emb, pids, isq = _clustered(50, 3, 8, 0.5, 4)
    res = evaluate_retrieval(emb, pids, isq, n_boot=10, max_negatives=500)["overall"]
    assert res["negatives_subsampled"] and 350 < res["n_negative"] < 650
    assert res["n_positive"] == 100  # all kept
    with pytest.raises(InputError, match="queries"):
        evaluate_retrieval(emb, pids, np.zeros(len(pids), bool))


def test_verification_pairs_are_the_query_gallery_cosines():
    emb, pids, isq = _clustered(5, 3, 4, 1.0, 5)
    scores, same = verification_pairs(emb, pids, isq)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    expected = e[isq] @ e[~isq].T
    np.testing.assert_allclose(np.sort(scores), np.sort(expected.ravel()), rtol=1e-5)
    assert same.sum() == 10 and len(same) == 50
    np.testing.assert_allclose(
        np.sort(scores[same]), np.sort(expected[pids[isq][:, None] == pids[~isq]]), rtol=1e-5
    )
