"""Entry points of the phantom generator: random-access ``render`` and cohort ``generate``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from deid.errors import InputError
from reid_model.phantoms.brain_mri import render_brain_mri
from reid_model.phantoms.chest_ct import render_chest_ct
from reid_model.phantoms.chest_xray import render_chest_xray
from reid_model.phantoms.common import check_indices, dataset_code
from reid_model.phantoms.findings import FINDINGS, resolve_findings, visit_findings
from reid_model.phantoms.fundus import render_fundus
from reid_model.phantoms.protocol import SPLITS, QueryGallery, query_gallery, split_of
from reid_model.phantoms.types import DATASETS, PhantomImage

__all__ = [
    "DATASETS",
    "FINDINGS",
    "QueryGallery",
    "generate",
    "query_gallery",
    "render",
    "split_of",
]

_Renderer = Callable[[str, int, int, int, str, dict[str, bool]], PhantomImage]
_RENDERERS: dict[str, _Renderer] = {
    "cxr_site_a": render_chest_xray,
    "cxr_site_b": render_chest_xray,
    "chest_ct": render_chest_ct,
    "fundus": render_fundus,
    "brain_mri": render_brain_mri,
}


def render(
    dataset: str,
    patient_index: int,
    visit: int,
    seed: int = 0,
    *,
    findings: Mapping[str, bool] | None = None,
) -> PhantomImage:
    """Render one visit of one phantom patient.

    Deterministic from (seed, dataset, patient_index, visit): anatomy comes from
    ``np.random.default_rng([seed, dataset_code, patient_index])``, the visit's nuisance from its
    own stream, so any visit can be rendered without the others.

    Parameters
    ----------
    dataset
        One of ``DATASETS``.
    patient_index, visit
        Non-negative integers; visit 0 is the first in time.
    seed
        Cohort seed (non-negative).
    findings
        Optional override of some findings (e.g. ``{"nodule": True}``) for utility studies and
        tests; everything else in the image is unchanged by it.

    Returns
    -------
    PhantomImage

    Raises
    ------
    InputError
        For an unknown dataset or finding name, or a negative index or seed.
    """
    dataset_code(dataset)
    check_indices(patient_index=patient_index, visit=visit, seed=seed)
    drawn = visit_findings(seed, dataset, patient_index, visit)
    chosen = resolve_findings(dataset, drawn, findings)
    split = split_of(patient_index, seed)
    return _RENDERERS[dataset](dataset, patient_index, visit, seed, split, chosen)


def generate(
    datasets: Sequence[str],
    n_patients: int,
    n_visits: int,
    seed: int = 0,
    splits: Sequence[str] | None = None,
) -> Iterator[PhantomImage]:
    """Yield every visit of patients ``0..n_patients-1`` of each dataset, in that order.

    Parameters
    ----------
    datasets
        Dataset names (see ``DATASETS``).
    n_patients
        Patient indices to consider per dataset (before filtering by split).
    n_visits
        Visits per patient (at least 2 for a query/gallery protocol).
    seed
        Cohort seed.
    splits
        Keep only patients of these splits; all when None.

    Raises
    ------
    InputError
        For unknown datasets or splits, or non-positive counts (raised before yielding).
    """
    if isinstance(datasets, str):
        raise InputError("datasets must be a sequence of names, e.g. ['fundus'], not one string")
    for name in datasets:
        dataset_code(name)
    check_indices(n_patients=n_patients, n_visits=n_visits, seed=seed)
    if n_patients < 1 or n_visits < 1:
        raise InputError(f"n_patients and n_visits must be >= 1, got {n_patients}, {n_visits}")
    wanted = set(SPLITS if splits is None else splits)
    if not wanted <= set(SPLITS):
        raise InputError(f"unknown split(s) {sorted(wanted - set(SPLITS))}; use {SPLITS}")
    return _iterate(tuple(datasets), n_patients, n_visits, seed, wanted)


def _iterate(
    datasets: tuple[str, ...], n_patients: int, n_visits: int, seed: int, wanted: set[str]
) -> Iterator[PhantomImage]:
    for dataset in datasets:
        for patient_index in range(n_patients):
            if split_of(patient_index, seed) not in wanted:
                continue
            for visit in range(n_visits):
                yield render(dataset, patient_index, visit, seed)
