import json

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from deid.errors import CheckpointError, DeidError, InputError
from reid_model.calibration import Calibrator, reliability


def _pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true P(same | s) is the logistic 1 / (1 + exp(-(8 s - 4)))."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(-0.2, 1.0, n)
    same = rng.random(n) < 1 / (1 + np.exp(-(8 * s - 4)))
    return s, same


def test_isotonic_matches_sklearn_and_round_trips_through_json():
    s, same = _pairs(2000, 0)
    cal = Calibrator().fit(s, same, "isotonic")
    probe = np.linspace(-1, 1.5, 101)  # includes points outside the fitted range
    ref = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s, same.astype(float))
    np.testing.assert_allclose(cal.predict(probe), ref.predict(probe), atol=1e-12)
    again = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_array_equal(again.predict(probe), cal.predict(probe))
    p = cal.predict(probe)
    assert np.all(np.diff(p) >= 0) and p.min() >= 0 and p.max() <= 1


def test_platt_recovers_the_generating_curve():
    s, same = _pairs(5000, 1)
    cal = Calibrator().fit(s, same, "platt")
    d = cal.to_dict()
    assert d["slope"] == pytest.approx(8, rel=0.15) and d["intercept"] == pytest.approx(
        -4, rel=0.15
    )
    # Close to an (almost) unregularised logistic regression on the same data.
    lr = LogisticRegression(C=1e6).fit(s[:, None], same)
    probe = np.array([0.0, 0.5, 0.9])
    np.testing.assert_allclose(
        cal.predict(probe), lr.predict_proba(probe[:, None])[:, 1], atol=0.01
    )
    again = Calibrator.from_dict(json.loads(json.dumps(d)))
    np.testing.assert_allclose(again.predict(probe), cal.predict(probe))


def test_platt_stays_finite_on_separable_pairs():
    s = np.r_[np.linspace(0.0, 0.4, 50), np.linspace(0.6, 1.0, 50)]
    same = s > 0.5
    p = Calibrator().fit(s, same, "platt").predict(np.array([0.0, 0.5, 1.0]))
    assert np.all(np.isfinite(p)) and p[0] < 0.05 and p[2] > 0.95


def test_calibrated_probabilities_are_reliable():
    s, same = _pairs(4000, 2)
    held_s, held_same = _pairs(4000, 3)
    raw = reliability(np.clip(held_s, 0, 1), held_same, bins=10)
    for method in ("isotonic", "platt"):
        rel = reliability(Calibrator().fit(s, same, method).predict(held_s), held_same, bins=10)
        assert rel["ece"] < 0.04 < raw["ece"]


def test_reliability_hand_computed():
    rel = reliability(np.array([0.05, 0.15, 0.95, 1.0]), np.array([0, 1, 1, 1]), bins=2)
    assert rel["edges"] == [0.0, 0.5, 1.0]
    assert rel["count"] == [2, 2]
    assert rel["mean_predicted"] == pytest.approx([0.1, 0.975])
    assert rel["observed"] == [0.5, 1.0]
    assert rel["ece"] == pytest.approx((2 * 0.4 + 2 * 0.025) / 4)
    assert reliability(np.array([0.9]), np.array([1]), bins=3)["observed"][:2] == [None, None]
    with pytest.raises(InputError, match="probabilities"):
        reliability(np.array([1.2]), np.array([1]))


def test_errors():
    with pytest.raises(DeidError, match="not fitted"):
        Calibrator().predict(np.zeros(2))
    with pytest.raises(InputError, match="both"):
        Calibrator().fit(np.zeros(3), np.ones(3, bool))
    with pytest.raises(InputError, match="unknown"):
        Calibrator().fit(np.array([0.0, 1.0]), np.array([False, True]), "beta")  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="malformed"):
        Calibrator.from_dict({"method": "isotonic", "x": [0.0]})
    bad = {"version": 1, "method": "isotonic", "n_fit": 2, "x": [0.0, 1.0], "y": [1.0, 0.0]}
    with pytest.raises(CheckpointError, match="increasing"):
        Calibrator.from_dict(bad)
    with pytest.raises(CheckpointError, match="version"):
        Calibrator.from_dict({**bad, "version": 99})
