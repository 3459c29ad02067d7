"""The before/after table of a scrub report: the score of the input beside the score of the
safe copy, row by row, from two ``deid score`` results dicts (see :mod:`deid.report.schema`).

A side may be a full results dict or a metadata-only one (``{"metadata": ..., "scope": ...}``,
written when no re-identifier checkpoint was usable); rows a side cannot fill hold ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypedDict

from deid.report.verdict import decide_verdict

Format = Literal["int", "pct", "num", "text"]
Change = Literal["safer", "riskier", "same", "n/a"]


class CompareRow(TypedDict):
    section: str  # "pixels", "accuracy", "metadata" or "files"
    label: str
    input: int | float | str | None
    output: int | float | str | None
    format: Format
    change: Change  # judged only for rows where a lower value is safer


class SideVerdict(TypedDict):
    level: str
    headline: str
    reasons: list[str]  # counts and thresholds only, never a value from a file


class Comparison(TypedDict):
    rows: list[CompareRow]
    pixels_measured: bool  # both sides were embedded by the re-identifier
    threshold: float | None
    truth_source: dict[str, str | None]  # side -> where identities came from, None: not measured
    verdicts: dict[str, SideVerdict | None]  # side -> verdict of its score, None: not scored


Getter = Callable[[Mapping[str, Any]], Any]


def _path(*keys: str) -> Getter:
    """Getter of a nested value; None where a level is missing or None."""

    def get(results: Mapping[str, Any]) -> Any:
        value: Any = results
        for key in keys:
            if not isinstance(value, Mapping) or value.get(key) is None:
                return None
            value = value[key]
        return value

    return get


def _ps315_values(results: Mapping[str, Any]) -> int | None:
    counts = _path("metadata", "action_counts")(results)
    return None if counts is None else int(sum(counts.values()))


def _unreadable(results: Mapping[str, Any]) -> int | None:
    return _path("scope", "n_skipped")(results)


# (section, label, getter, format, lower is safer)
_ROWS: tuple[tuple[str, str, Getter, Format, bool], ...] = (
    ("pixels", "Records scored", _path("linkage", "n_records"), "int", False),
    # counts follow the number of records, which quarantine changes: judge the shares
    ("pixels", "Records at risk", _path("linkage", "n_at_risk"), "int", False),
    ("pixels", "Share of records at risk", _path("linkage", "share_at_risk"), "pct", True),
    ("pixels", "Highest individual risk", _path("linkage", "max_risk"), "num", True),
    ("pixels", "Average success rate (mean risk)", _path("linkage", "mean_risk"), "num", True),
    (
        "pixels",
        "Patients estimated from links",
        _path("linkage", "estimated_patients"),
        "int",
        False,
    ),
    ("pixels", "Patients the release claims", _path("linkage", "claimed_patients"), "int", False),
    (
        "pixels",
        "Pseudonym pairs joined by a strong link",
        _path("linkage", "linked_pseudonym_pairs"),
        "int",
        True,
    ),
    ("accuracy", "Rank-1 (all groups)", _path("truth", "groups", "all", "rank1"), "pct", True),
    ("accuracy", "mAP (all groups)", _path("truth", "groups", "all", "mAP"), "pct", True),
    ("metadata", "PS3.15 attributes present with a value", _ps315_values, "int", True),
    (
        "metadata",
        "Files with direct identifiers (name, ID, birth date)",
        _path("metadata", "direct_identifier_files"),
        "int",
        True,
    ),
    ("metadata", "Files with private tags", _path("metadata", "private_tags_files"), "int", True),
    (
        "metadata",
        "Files with PHI-looking tokens in their path",
        _path("metadata", "path_phi_files"),
        "int",
        True,
    ),
    (
        "metadata",
        "Files without PatientIdentityRemoved YES",
        _path("metadata", "identity_not_removed_files"),
        "int",
        True,
    ),
    (
        "metadata",
        "Files where burned-in text is not ruled out",
        _path("metadata", "burned_in_annotation_files"),
        "int",
        True,
    ),
    (
        "metadata",
        "Files with PNG/JPEG text chunks or EXIF",
        _path("metadata", "embedded_text_files"),
        "int",
        True,
    ),
    ("files", "Files audited", _path("metadata", "n_files"), "int", False),
    ("files", "Unreadable files", _unreadable, "int", True),
)


def _change(before: Any, after: Any, lower_is_safer: bool) -> Change:
    if (
        not lower_is_safer
        or not isinstance(before, int | float)
        or not isinstance(after, int | float)
    ):
        return "n/a"
    if math.isclose(before, after, rel_tol=1e-9, abs_tol=1e-12):  # float noise between runs
        return "same"
    if after < before:
        return "safer"
    return "riskier" if after > before else "same"


def _verdict(results: Mapping[str, Any] | None) -> SideVerdict | None:
    if results is None or "linkage" not in results or "options" not in results:
        return None
    verdict = decide_verdict(results)
    return {"level": verdict.level, "headline": verdict.headline, "reasons": list(verdict.reasons)}


def compare_scores(
    input_score: Mapping[str, Any] | None, output_score: Mapping[str, Any] | None
) -> Comparison:
    """Line up the score of the input and the score of the safe copy.

    Parameters
    ----------
    input_score, output_score : Mapping or None
        ``deid score`` results dicts (full, or with only ``metadata`` and ``scope``); None for
        a side that was not scored.

    Returns
    -------
    Comparison
        One row per measure present on either side; rows of sections neither side measured
        (e.g. accuracy without identities) are left out.
    """
    sides = {"input": input_score or {}, "output": output_score or {}}
    rows: list[CompareRow] = []
    for section, label, get, fmt, lower_is_safer in _ROWS:
        before, after = get(sides["input"]), get(sides["output"])
        if before is None and after is None:
            continue
        rows.append(
            {
                "section": section,
                "label": label,
                "input": before,
                "output": after,
                "format": fmt,
                "change": _change(before, after, lower_is_safer),
            }
        )
    measured = all("linkage" in side for side in sides.values())
    threshold = _path("linkage", "threshold")(sides["output"]) or _path("linkage", "threshold")(
        sides["input"]
    )
    return {
        "rows": rows,
        "pixels_measured": measured,
        "threshold": threshold,
        "truth_source": {name: _path("truth", "source")(side) for name, side in sides.items()},
        "verdicts": {"input": _verdict(input_score), "output": _verdict(output_score)},
    }
