"""The verdict at a glance: green, amber or red, with the reasons in plain words.

Red: the share of records at risk is above ``fail_above``, or files carry direct identifiers
(a name, an ID or a birth date in a header, a path or embedded text). ``deid score`` exits with
code 3 exactly when the verdict is red. Amber: some record is at risk but not more than
``fail_above``, or other metadata findings remain (private tags, burned-in annotation flags,
PatientIdentityRemoved missing). Green: nothing of the above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["green", "amber", "red"]
# below this validation rank-1 the adversary is too weak for its low risk figures to reassure
WEAK_ADVERSARY_RANK1 = 0.5


@dataclass(frozen=True)
class Verdict:
    level: Level
    headline: str
    reasons: tuple[str, ...]
    threshold_rationale: str


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def threshold_rationale(threshold: float, fail_above: float) -> str:
    """Explain in one paragraph what the two numbers mean, for the reader who signs off."""
    return (
        f"A record counts as at risk when the re-identifier links it to another record of the "
        f"release with a calibrated probability of at least {threshold:.2f} that both show the "
        f"same patient{' (the attacker’s best guess is then more likely right than wrong)' if threshold == 0.5 else ''}. "
        f"The release fails when more than {fail_above:.1%} of its records are at risk. "
        "The probability is calibrated on held-out patients of the checkpoint’s training data, "
        "so it is only as good as that data is like this release."
    )


def decide_verdict(results: Mapping[str, Any]) -> Verdict:
    """Grade a results dict (see :mod:`deid.report.schema`).

    Parameters
    ----------
    results : Mapping
        Needs ``linkage``, ``metadata`` and ``options["fail_above"]``.

    Returns
    -------
    Verdict
        The level, a one-line headline, the reasons and the threshold rationale.
    """
    link = results["linkage"]
    meta = results["metadata"]
    fail_above = float(results["options"]["fail_above"])
    share = float(link["share_at_risk"])
    red: list[str] = []
    amber: list[str] = []

    at_risk = (
        f"{link['n_at_risk']} of {link['n_records']} records ({share:.1%}) are linked to another "
        f"record with P(same patient) ≥ {link['threshold']:.2f}"
    )
    if share > fail_above:
        red.append(f"{at_risk}, above the allowed {fail_above:.1%}.")
    elif link["n_at_risk"] > 0:
        amber.append(f"{at_risk}, within the allowed {fail_above:.1%}.")
    if meta["direct_identifier_files"]:
        red.append(
            "Direct identifiers (name, ID or birth date) in the headers, paths or embedded text "
            f"of {_files(meta['direct_identifier_files'])}."
        )
    for key, text in (
        ("private_tags_files", "Private tags in {}."),
        (
            "burned_in_annotation_files",
            "BurnedInAnnotation not declared NO in {} (text may be burned into the pixels).",
        ),
        ("identity_not_removed_files", "PatientIdentityRemoved not declared YES in {}."),
        ("embedded_text_files", "PNG/JPEG text chunks or EXIF in {}."),
    ):
        if meta[key]:
            amber.append(text.format(_files(meta[key])))

    strength = results.get("checkpoint", {}).get("validation_rank1")
    if strength is not None and strength < WEAK_ADVERSARY_RANK1:
        amber.append(
            f"The re-identifier is weak: it ranked the right patient first for only "
            f"{strength:.0%} of its validation queries, so a low linkage figure is not evidence "
            "that the release is safe. Score again with a stronger checkpoint."
        )

    rationale = threshold_rationale(float(link["threshold"]), fail_above)
    if red:
        return Verdict("red", "Not safe to release as is", tuple(red + amber), rationale)
    if amber:
        return Verdict("amber", "Release only after review", tuple(amber), rationale)
    return Verdict(
        "green",
        "No record at risk at this threshold",
        (f"No record reaches P(same patient) ≥ {link['threshold']:.2f}; no metadata findings.",),
        rationale,
    )
