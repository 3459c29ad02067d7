"""The results dict that ``deid score`` hands to the report writer, defined in one place.

Everything in it is plain JSON (str, int, float, bool, None, lists, dicts with str keys), so
``report.json`` is the dict itself. It never holds a name or an identifier of a patient: images
are referred to by their position in the release (``index``) and, where a file name is needed
(skipped files, per-file metadata findings), by the release-relative path with PHI-looking tokens
already masked by the producer.

Optional sections (``truth``, ``gallery``, ``thumbnails``) are ``None`` when the run did not
produce them; the report then says why the section is empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypedDict

from deid.errors import InputError

SCHEMA_VERSION = 1


class Histogram(TypedDict):
    edges: list[float]  # len(counts) + 1 bin edges
    counts: list[int]


class ModalityRisk(TypedDict):
    n_records: int
    n_at_risk: int  # records whose strongest link has P(same patient) >= threshold
    share_at_risk: float
    max_risk: float
    mean_risk: float


class Linkage(TypedDict):
    """Linkage inside the release: needs no identities."""

    threshold: float  # P(same patient) at or above which a link puts a record at risk
    uses_pseudonyms: bool  # links count only across different released pseudonyms
    n_records: int
    n_at_risk: int
    share_at_risk: float  # ARX "records at risk"
    max_risk: float  # ARX "highest risk": the largest per-record P(same patient)
    mean_risk: float  # ARX "success rate": mean per-record P(same patient)
    estimated_patients: int  # connected components of links at or above the threshold
    claimed_patients: int | None  # distinct pseudonyms in the release, None when it has none
    linked_pseudonym_pairs: int | None  # pairs of pseudonyms joined by a strong link
    per_record_risk: list[float]  # index-aligned with the release's records
    risk_histogram: Histogram
    per_modality: dict[str, ModalityRisk]


class Interval(TypedDict):
    low: float
    high: float


class GroupMetrics(TypedDict):
    """Retrieval and verification metrics of one dataset/modality group (or "all")."""

    n_images: int
    n_patients: int
    n_queries: int  # queries that have at least one same-patient image in the gallery
    rank1: float
    rank5: float
    mAP: float
    auc: float | None  # None when a group has no same-patient or no different-patient pair
    tar_at_far_1e3: float | None
    ci: dict[str, Interval]  # 95% bootstrap intervals over patients, keyed by metric name
    cmc_ranks: list[int]  # ranks of the CMC points (1..10, or 1, 5, 10 for very large sets)
    cmc: list[float]  # share of queries whose first correct match is within each rank
    roc_fpr: list[float]
    roc_tpr: list[float]


class Truth(TypedDict):
    source: str  # "truth CSV" or "PatientID of the files"
    n_matched: int  # records that the truth names
    groups: dict[str, GroupMetrics]  # "all" plus one entry per dataset/modality
    not_measured: dict[str, str]  # group -> why it has no metrics (e.g. one visit per patient)
    similarity_same: Histogram  # cosine similarity of same-patient pairs
    similarity_different: Histogram


class Gallery(TypedDict):
    n_gallery: int
    with_truth: bool
    top1_correct_share: float | None  # with truth: best gallery match is the right patient
    best_match_probability: Histogram  # P(same patient) of each release image's best match
    n_above_threshold: int


class FileFindings(TypedDict):
    path: str  # release-relative, PHI-looking tokens masked
    findings: list[str]


class Metadata(TypedDict):
    n_files: int
    n_dicom: int
    action_counts: dict[
        str, int
    ]  # PS3.15 Table E.1-1 action code -> attributes present with values
    attributes_present: dict[str, int]  # attribute keyword -> files where it holds a value
    private_tags_files: int
    burned_in_annotation_files: int  # BurnedInAnnotation == "YES" or absent on a modality at risk
    identity_not_removed_files: int  # PatientIdentityRemoved absent or "NO"
    path_phi_files: int
    embedded_text_files: int  # PNG/JPEG text chunks or EXIF
    direct_identifier_files: int  # files holding a name, ID or birth date (header or path)
    per_file: list[FileFindings]


class Skipped(TypedDict):
    path: str
    reason: str


class Thumbnail(TypedDict):
    label: str  # modality and release index, never a file name
    png_base64: str


class Results(TypedDict):
    schema_version: int
    tool: dict[str, str]  # name, version
    created_utc: str
    command: str  # the command line that reproduces this report
    options: dict[str, Any]
    checkpoint: dict[str, Any]  # name, sha256, preset, trained_on, validation_rank1 (or None)
    scope: dict[str, Any]  # n_files, n_records, n_skipped, per_modality: {modality: count}
    linkage: Linkage
    truth: Truth | None
    gallery: Gallery | None
    metadata: Metadata
    skipped: list[Skipped]
    thumbnails: list[Thumbnail] | None
    timings_s: dict[str, float]


REQUIRED_KEYS: tuple[str, ...] = tuple(Results.__annotations__)


def histogram(values: list[float], edges: list[float]) -> Histogram:
    """Count ``values`` into the bins given by ``edges`` (last bin closed on the right).

    Parameters
    ----------
    values : list of float
        The values to count.
    edges : list of float
        Increasing bin edges, at least two.

    Returns
    -------
    Histogram
        ``{"edges": edges, "counts": counts}`` with ``len(edges) - 1`` counts.
    """
    counts = [0] * (len(edges) - 1)
    for value in values:
        if not edges[0] <= value <= edges[-1]:
            continue
        # bisect by hand: edges are few and this keeps the module numpy-free
        lo, hi = 0, len(edges) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if value >= edges[mid]:
                lo = mid
            else:
                hi = mid
        counts[lo] += 1
    return {"edges": list(edges), "counts": counts}


def validate_results(results: Mapping[str, Any]) -> None:
    """Check that ``results`` has every section and holds only finite JSON values.

    Raises
    ------
    InputError
        If a section is missing, the schema version differs, or a value is not JSON
        (NaN and infinity included, which JSON cannot represent portably).
    """
    missing = [key for key in REQUIRED_KEYS if key not in results]
    if missing:
        raise InputError(
            f"report results lack the sections {missing}; build them with deid.score.score_release "
            "or fill every key of deid.report.schema.Results."
        )
    if results["schema_version"] != SCHEMA_VERSION:
        raise InputError(
            f"report results have schema version {results['schema_version']}, this tool writes "
            f"version {SCHEMA_VERSION}; re-run deid score with this version."
        )
    _check_json(results, "results")


def _check_json(value: Any, where: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"report value {where} is {value}; use None for a missing number.")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(f"report key {key!r} in {where} is not a string.")
            _check_json(item, f"{where}.{key}")
        return
    raise InputError(
        f"report value {where} has type {type(value).__name__}, which JSON cannot hold; "
        "convert numpy values with float()/int()/tolist() first."
    )
