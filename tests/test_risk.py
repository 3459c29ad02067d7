import json

import numpy as np
import pytest

from deid.errors import InputError
from deid.risk import linkage_risk, topk_neighbours
from reid_model.calibration import Calibrator


def _brute_force(x, k, groups):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ xn.T
    g = np.arange(len(x)) if groups is None else np.asarray(groups)
    sims[g[:, None] == g[None, :]] = -np.inf
    return np.sort(sims, axis=1)[:, ::-1][:, :k]


@pytest.mark.parametrize("chunk", [3, 7, 50, 1000])
@pytest.mark.parametrize("with_groups", [False, True])
@pytest.mark.parametrize("k", [1, 4])
def test_topk_matches_brute_force(chunk, with_groups, k):
    rng = np.random.default_rng(chunk)
    x = rng.normal(size=(83, 6))
    groups = rng.choice(["a", "b", "c", "d", "e", "f", "g"], 83) if with_groups else None
    idx, sims = topk_neighbours(x, k, chunk, groups=groups)
    np.testing.assert_allclose(sims, _brute_force(x, k, groups), atol=1e-5)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    rows = np.arange(83)[:, None]
    np.testing.assert_allclose((xn[rows] * xn[idx]).sum(-1), sims, atol=1e-5)
    assert np.all(idx != rows)
    if with_groups:
        assert np.all(groups[idx] != groups[:, None])


def test_topk_pads_when_too_few_candidates():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    idx, sims = topk_neighbours(x, 3, chunk=2, groups=["p", "p", "q"])
    assert idx[0].tolist() == [2, -1, -1] and np.isneginf(sims[0, 1:]).all()
    assert idx[2].tolist()[:2] == [1, 0] and idx[2, 2] == -1
    with pytest.raises(InputError, match="finite"):
        topk_neighbours(np.array([[np.nan, 1.0]]), 1)
    with pytest.raises(InputError, match="k and chunk"):
        topk_neighbours(x, 0)


def _release(seed: int = 0):
    """Six patients x two images, tight clusters, and a calibrator: cos > ~0.8 -> same patient."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 32))
    patient = np.repeat(np.arange(6), 2)
    emb = centres[patient] + 0.05 * rng.normal(size=(12, 32))
    s = np.r_[rng.uniform(0.85, 1.0, 200), rng.uniform(-0.4, 0.6, 800)]
    same = np.r_[np.ones(200, bool), np.zeros(800, bool)]
    return emb, patient, Calibrator().fit(s, same, "isotonic")


def test_correct_pseudonyms_leave_nothing_to_link():
    emb, patient, cal = _release()
    out = linkage_risk(emb, cal, [f"P{p}" for p in patient], threshold=0.5)
    summary = out["summary"]
    json.dumps(summary)
    assert summary["records_at_risk"] == 0 and summary["highest_risk"] < 0.5
    assert summary["estimated_patients"] == summary["claimed_patients"] == 6
    assert summary["linked_pseudonym_pairs"] == 0
    links = out["per_record"]["link"]
    assert np.all(patient[links] != patient)  # links only go to other pseudonyms


def test_one_patient_under_two_pseudonyms_is_found():
    emb, patient, cal = _release()
    names = [f"P{p}" for p in patient]
    names[11] = "P-extra"  # patient 5's second image released under a new pseudonym
    out = linkage_risk(emb, cal, names, threshold=0.5)
    s, per = out["summary"], out["per_record"]
    assert s["claimed_patients"] == 7 and s["estimated_patients"] == 6
    assert s["records_at_risk"] == 2 and s["linked_pseudonym_pairs"] == 1
    assert per["link"][10] == 11 and per["link"][11] == 10
    assert per["risk"][10] == pytest.approx(1.0) and s["highest_risk"] == pytest.approx(1.0)
    assert s["average_risk"] == pytest.approx(per["risk"].mean())
    assert per["cluster"][10] == per["cluster"][11] != per["cluster"][0]


def test_release_without_ids_links_every_image_to_its_sibling():
    emb, patient, cal = _release()
    out = linkage_risk(emb, cal, None, threshold=0.9, chunk=5)
    s, per = out["summary"], out["per_record"]
    assert s["records_at_risk"] == 12 and s["share_at_risk"] == 1.0
    assert s["claimed_patients"] is None and s["estimated_patients"] == 6
    assert np.all(patient[per["link"]] == patient) and np.all(per["link"] != np.arange(12))
    np.testing.assert_allclose(per["risk"], cal.predict(per["similarity"]))


def test_single_image_and_errors():
    emb, _, cal = _release()
    out = linkage_risk(emb[:1], cal, ["a"])
    assert out["summary"]["highest_risk"] == 0.0 and out["per_record"]["link"][0] == -1
    assert out["summary"]["estimated_patients"] == 1
    with pytest.raises(InputError, match="threshold"):
        linkage_risk(emb, cal, None, threshold=1.5)
    with pytest.raises(InputError, match="pseudonym"):
        linkage_risk(emb, cal, ["a", "b"])
    with pytest.raises(InputError, match="no images"):
        linkage_risk(emb[:0], cal, None)
    with pytest.raises(InputError, match="no pseudonym"):
        linkage_risk(emb[:2], cal, ["a", None])


def _naive_linkage(emb, cal, pseudonyms, link_p):
    """Full-matrix reference: risk per image, pseudonym pairs linked, and components count."""
    n = len(emb)
    xn = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    names = list(range(n)) if pseudonyms is None else list(pseudonyms)
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    risk, linked = np.zeros(n), set()
    for i in range(n):
        for j in range(n):
            if names[i] == names[j] and (pseudonyms is not None or i == j):
                if pseudonyms is not None:
                    parent[root(i)] = root(j)
                continue
            p = float(cal.predict(np.array([xn[i] @ xn[j]]))[0])
            risk[i] = max(risk[i], p)
            if p > link_p:
                parent[root(i)] = root(j)
                linked.add(tuple(sorted((names[i], names[j]))))
    return risk, len(linked), len({root(i) for i in range(n)})


@pytest.mark.parametrize("with_pseudonyms", [False, True])
@pytest.mark.parametrize("permissive", [False, True])
def test_linkage_matches_full_matrix_reference(with_pseudonyms, permissive):
    rng = np.random.default_rng(11)
    patient = np.repeat(np.arange(15), 3)
    emb = rng.normal(size=(15, 8))[patient] + 0.3 * rng.normal(size=(45, 8))
    names = [f"P{p}" for p in patient]
    for i in rng.choice(45, 8, replace=False):  # some images under wrong or new pseudonyms
        names[i] = f"P{rng.integers(0, 20)}"
    s = rng.uniform(-1, 1, 2000)
    # permissive: P(same) > 0.5 for almost every pair, so edges overflow and get compacted
    cal = Calibrator().fit(s, s > (-0.9 if permissive else 0.8), "platt")
    pseudonyms = names if with_pseudonyms else None
    out = linkage_risk(emb, cal, pseudonyms, threshold=0.5, chunk=7)
    risk, pairs, patients = _naive_linkage(emb, cal, pseudonyms, 0.5)
    np.testing.assert_allclose(out["per_record"]["risk"], risk, atol=1e-5)
    assert out["summary"]["estimated_patients"] == patients
    assert out["summary"]["linked_pseudonym_pairs"] == (pairs if with_pseudonyms else None)
    assert len(np.unique(out["per_record"]["cluster"])) == patients


def test_decreasing_calibrator_is_rejected():
    s = np.linspace(-1, 1, 200)
    cal = Calibrator().fit(s, s < 0.2, "platt")  # negative slope
    emb, _, _ = _release()
    with pytest.raises(InputError, match="re-calibrate"):
        linkage_risk(emb, cal, None)
