"""Which findings each phantom dataset labels, and which a given visit has.

A persistent finding appears at an onset visit and stays (nodules, cardiomegaly, atrophy);
a transient one is drawn afresh at every visit (opacities, effusions, haemorrhages).
Prevalences of 20-40 % keep per-finding AUC measurable on a few hundred images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from deid.errors import InputError
from reid_model.phantoms.common import STREAM_FINDING, dataset_code, stream_key


@dataclass(frozen=True)
class FindingSpec:
    name: str
    persistent: bool
    prevalence: float  # expected fraction of visits with the finding (persistent: by visit ~2)


_CXR = (
    FindingSpec("opacity", persistent=False, prevalence=0.25),
    FindingSpec("nodule", persistent=True, prevalence=0.25),
    FindingSpec("cardiomegaly", persistent=True, prevalence=0.30),
    FindingSpec("effusion", persistent=False, prevalence=0.25),
)

FINDING_SPECS: dict[str, tuple[FindingSpec, ...]] = {
    "cxr_site_a": _CXR,
    "cxr_site_b": _CXR,
    "chest_ct": (
        FindingSpec("ground_glass", persistent=False, prevalence=0.30),
        FindingSpec("nodule", persistent=True, prevalence=0.30),
    ),
    "fundus": (
        FindingSpec("microaneurysms", persistent=True, prevalence=0.30),
        FindingSpec("haemorrhages", persistent=False, prevalence=0.25),
        FindingSpec("exudates", persistent=False, prevalence=0.25),
    ),
    "brain_mri": (
        FindingSpec("atrophy", persistent=True, prevalence=0.30),
        FindingSpec("lesion", persistent=False, prevalence=0.30),
    ),
}

FINDINGS: dict[str, tuple[str, ...]] = {
    dataset: tuple(spec.name for spec in specs) for dataset, specs in FINDING_SPECS.items()
}


def finding_rng(
    seed: int, dataset: str, patient_index: int, finding: str, visit: int | None, purpose: int = 0
) -> np.random.Generator:
    """The stream that places one finding: per patient when ``visit`` is None (persistent
    findings keep their place), per visit otherwise. It is drawn whether or not the finding is
    present, so forcing a finding on or off changes nothing else in the image. ``purpose`` 0
    places the finding, 1 decides whether it is present."""
    index = FINDINGS[dataset].index(finding)
    code = dataset_code(dataset)
    when = (0, 0) if visit is None else (1, visit)
    return np.random.default_rng(
        stream_key(seed, code, patient_index, STREAM_FINDING, index, purpose, *when)
    )


def _onset_visit(rng: np.random.Generator) -> int:
    # Half of the affected patients have the finding at their first visit, the rest later.
    return 0 if rng.random() < 0.5 else int(rng.geometric(0.5))


def visit_findings(seed: int, dataset: str, patient_index: int, visit: int) -> dict[str, bool]:
    """The true findings of one visit."""
    out: dict[str, bool] = {}
    for spec in FINDING_SPECS[dataset]:
        if spec.persistent:
            rng = finding_rng(seed, dataset, patient_index, spec.name, None, purpose=1)
            affected = rng.random() < min(1.0, spec.prevalence / 0.8)
            onset = _onset_visit(rng)
            out[spec.name] = bool(affected and visit >= onset)
        else:
            rng = finding_rng(seed, dataset, patient_index, spec.name, visit, purpose=1)
            out[spec.name] = bool(rng.random() < spec.prevalence)
    return out


def resolve_findings(
    dataset: str, drawn: dict[str, bool], override: Mapping[str, bool] | None
) -> dict[str, bool]:
    """Apply a caller's override (used by tests and utility studies) to the drawn findings.

    Raises
    ------
    InputError
        If the override names a finding the dataset does not label.
    """
    if override is None:
        return drawn
    unknown = set(override) - set(FINDINGS[dataset])
    if unknown:
        raise InputError(
            f"{dataset} has no finding(s) {sorted(unknown)}; its findings are {FINDINGS[dataset]}"
        )
    return {**drawn, **{k: bool(v) for k, v in override.items()}}
