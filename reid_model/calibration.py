"""Calibration of embedding similarity into P(same patient), stored with the checkpoint.

The map is fitted on validation pairs (patients never seen in training). After fitting it is
held as plain numbers (isotonic knots, or Platt's slope and intercept), so it serialises to
JSON and predicts without scikit-learn or pickle.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from deid.errors import CheckpointError, DeidError, InputError

Method = Literal["isotonic", "platt"]
FORMAT_VERSION = 1


def _fit_platt(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of Platt scaling (Platt, 1999), with its smoothed targets."""
    from scipy.optimize import minimize

    n_pos, n_neg = int(same.sum()), int((~same).sum())
    target = np.where(same, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        z = ab[0] * scores + ab[1]
        nll = np.sum(target * np.logaddexp(0, -z) + (1 - target) * np.logaddexp(0, z))
        dz = 1 / (1 + np.exp(-z)) - target
        return float(nll), np.array([dz @ scores, dz.sum()])

    res = minimize(loss, np.zeros(2), jac=True, method="L-BFGS-B")
    if not np.all(np.isfinite(res.x)):
        raise InputError("Platt scaling did not converge; use method='isotonic'.")
    return float(res.x[0]), float(res.x[1])


class Calibrator:
    """Monotone map from a similarity score to the probability that two images share a patient.

    ``isotonic``: scikit-learn's isotonic regression, interpolated linearly between its knots
    and clipped outside them. ``platt``: ``p = 1 / (1 + exp(-(a * s + b)))`` fitted by maximum
    likelihood against Platt's smoothed targets, which keeps the fit finite when the validation
    pairs are perfectly separable.
    """

    def __init__(self) -> None:
        self.method: Method | None = None
        self._x = np.empty(0)
        self._y = np.empty(0)
        self._coef = (0.0, 0.0)
        self.n_fit = 0

    @property
    def fitted(self) -> bool:
        return self.method is not None

    def fit(self, scores: np.ndarray, same: np.ndarray, method: Method = "isotonic") -> Calibrator:
        """Fit on pair similarities and same-patient labels.

        Parameters
        ----------
        scores : np.ndarray
            (P,) similarities of validation pairs.
        same : np.ndarray
            (P,) True where the pair shows one patient.
        method : {"isotonic", "platt"}
            Calibration family.

        Returns
        -------
        Calibrator
            ``self``, fitted.

        Raises
        ------
        InputError
            If shapes disagree, a score is not finite, a class is missing, or the method is
            unknown.
        """
        scores = np.asarray(scores, dtype=np.float64)
        same = np.asarray(same, dtype=bool)
        if scores.ndim != 1 or scores.shape != same.shape:
            raise InputError(f"scores {scores.shape} and labels {same.shape} must be equal 1-D.")
        if not np.isfinite(scores).all():
            raise InputError("calibration scores contain NaN or infinity; check the embeddings.")
        if same.all() or not same.any():
            raise InputError(
                "calibration needs both same-patient and different-patient pairs; use a "
                "validation split with several visits per patient."
            )
        if method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
            iso.fit(scores, same.astype(np.float64))
            self._x = np.asarray(iso.X_thresholds_, dtype=np.float64)
            self._y = np.asarray(iso.y_thresholds_, dtype=np.float64)
        elif method == "platt":
            self._coef = _fit_platt(scores, same)
        else:
            raise InputError(f"unknown calibration method {method!r}; use 'isotonic' or 'platt'.")
        self.method = method
        self.n_fit = len(scores)
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """P(same patient) for each similarity; same shape as ``scores``.

        Raises
        ------
        DeidError
            If the calibrator was neither fitted nor loaded.
        """
        if not self.fitted:
            raise DeidError(
                "the calibrator is not fitted; call fit() or load one with from_dict()."
            )
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(s, self._x, self._y)
        a, b = self._coef
        return 1.0 / (1.0 + np.exp(-(a * s + b)))

    def to_dict(self) -> dict:
        """JSON-able description for the checkpoint; :meth:`from_dict` rebuilds it."""
        if not self.fitted:
            raise DeidError("the calibrator is not fitted; nothing to save.")
        out: dict = {"version": FORMAT_VERSION, "method": self.method, "n_fit": self.n_fit}
        if self.method == "isotonic":
            out.update(x=self._x.tolist(), y=self._y.tolist())
        else:
            out.update(slope=self._coef[0], intercept=self._coef[1])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Calibrator:
        """Rebuild from :meth:`to_dict` output.

        Raises
        ------
        CheckpointError
            If the dictionary is malformed or from an unknown format version.
        """
        keys = {
            "isotonic": {"version", "method", "n_fit", "x", "y"},
            "platt": {"version", "method", "n_fit", "slope", "intercept"},
        }
        method = data.get("method") if isinstance(data, dict) else None
        if method not in keys or set(data) != keys[method]:
            raise CheckpointError(
                f"calibration entry {data!r:.200} is malformed; re-run calibration or use a "
                "checkpoint written by this version."
            )
        if data["version"] != FORMAT_VERSION:
            raise CheckpointError(
                f"calibration format version {data['version']} is not supported (expected "
                f"{FORMAT_VERSION}); upgrade mami-deid or re-calibrate."
            )
        cal = cls()
        cal.method = method
        cal.n_fit = int(data["n_fit"])
        if method == "isotonic":
            cal._x = np.asarray(data["x"], dtype=np.float64)
            cal._y = np.asarray(data["y"], dtype=np.float64)
            if cal._x.ndim != 1 or cal._x.shape != cal._y.shape or len(cal._x) == 0:
                raise CheckpointError("calibration knots are empty or uneven; re-calibrate.")
            if np.any(np.diff(cal._x) < 0) or np.any(np.diff(cal._y) < 0):
                raise CheckpointError("calibration knots are not increasing; re-calibrate.")
        else:
            cal._coef = (float(data["slope"]), float(data["intercept"]))
        return cal


def reliability(probs: np.ndarray, same: np.ndarray, bins: int = 10) -> dict:
    """Reliability-diagram data and expected calibration error.

    Parameters
    ----------
    probs : np.ndarray
        (P,) predicted P(same patient) in [0, 1].
    same : np.ndarray
        (P,) true labels.
    bins : int
        Equal-width bins over [0, 1]; the last bin includes 1.

    Returns
    -------
    dict
        JSON-able: ``edges`` (bins + 1), per bin ``count``, ``mean_predicted`` and ``observed``
        (share of same-patient pairs; None for empty bins), and ``ece`` (count-weighted mean
        absolute gap).

    Raises
    ------
    InputError
        If shapes disagree, probabilities leave [0, 1], or ``bins < 1``.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    if p.ndim != 1 or p.shape != y.shape or len(p) == 0:
        raise InputError(f"probabilities {p.shape} and labels {y.shape} must be equal 1-D.")
    if bins < 1 or np.any((p < 0) | (p > 1)) or np.isnan(p).any():
        raise InputError("reliability needs bins >= 1 and probabilities in [0, 1].")
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    sum_p = np.bincount(idx, p, minlength=bins)
    sum_y = np.bincount(idx, y.astype(np.float64), minlength=bins)
    nonempty = count > 0
    mean_p = np.where(nonempty, sum_p / np.maximum(count, 1), np.nan)
    observed = np.where(nonempty, sum_y / np.maximum(count, 1), np.nan)
    ece = float(np.nansum(count * np.abs(mean_p - observed)) / len(p))

    def listed(a: np.ndarray) -> list:
        return [None if np.isnan(v) else float(v) for v in a]

    return {
        "edges": edges.tolist(),
        "count": count.tolist(),
        "mean_predicted": listed(mean_p),
        "observed": listed(observed),
        "ece": ece,
    }
