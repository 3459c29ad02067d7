"""Linkage inside the release, as the report shows it: the ARX-style trio overall and per
modality, the per-record risk histogram and the estimated number of patients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deid.report.schema import Linkage, ModalityRisk, histogram

RISK_EDGES = np.linspace(0.0, 1.0, 21).tolist()


def _trio(risk: np.ndarray, threshold: float) -> ModalityRisk:
    at_risk = int((risk >= threshold).sum())
    return {
        "n_records": len(risk),
        "n_at_risk": at_risk,
        "share_at_risk": at_risk / len(risk) if len(risk) else 0.0,
        "max_risk": float(risk.max()) if len(risk) else 0.0,
        "mean_risk": float(risk.mean()) if len(risk) else 0.0,
    }


def linkage_section(
    emb: np.ndarray,
    calibrator: Any,
    pseudonyms: Sequence[str] | None,
    threshold: float,
    modalities: Sequence[str],
) -> Linkage:
    """Measure linkage with :func:`deid.risk.linkage_risk` and shape it for the report.

    Parameters
    ----------
    emb : np.ndarray
        (N, E) L2-normalised embeddings.
    calibrator : Calibrator
        Similarity -> P(same patient).
    pseudonyms : sequence of str or None
        Released patient pseudonym of each record; links count only between different
        pseudonyms. None when the release carries none.
    threshold : float
        P(same patient) at which a record counts as at risk.
    modalities : sequence of str
        Modality of each record, for the per-modality table.
    """
    from deid.risk import linkage_risk

    found = linkage_risk(emb, calibrator, pseudonyms, threshold)
    summary = found["summary"]
    risk = np.asarray(found["per_record"]["risk"], dtype=np.float64)
    mods = np.asarray(modalities)
    overall = _trio(risk, threshold)
    return {
        "threshold": threshold,
        "uses_pseudonyms": pseudonyms is not None,
        **overall,  # type: ignore[typeddict-item]
        "estimated_patients": int(summary["estimated_patients"]),
        "claimed_patients": summary["claimed_patients"],
        "linked_pseudonym_pairs": summary["linked_pseudonym_pairs"],
        "per_record_risk": [round(float(r), 6) for r in risk],
        "risk_histogram": histogram(risk.tolist(), RISK_EDGES),
        "per_modality": {
            str(m): _trio(risk[mods == m], threshold) for m in sorted(set(modalities))
        },
    }
