"""The results dict of a scrub report (``SAFE-report/report.json``), built from what
:func:`deid.scrub.scrub_release` returned and the scores of the input and the safe copy.

Plain JSON throughout, like the score report's dict. It names no patient and no input file:
quarantined and skipped files appear by their release-relative path with PHI-looking tokens
masked, and actions are counted per class, never with the values they removed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypedDict

from deid import __version__
from deid.report.schema import _check_json
from deid.report.scrub_compare import Comparison, compare_scores

if TYPE_CHECKING:
    from deid.scrub import ScrubSummary
    from deid.scrub.manifest import FileEntry

SCRUB_SCHEMA_VERSION = 1

# what each action class of the manifest did, for readers who do not know PS3.15 codes
ACTION_MEANINGS: dict[str, str] = {
    "X": "removed",
    "Z": "emptied or replaced by a dummy",
    "D": "replaced by a dummy value",
    "U": "UID replaced by a keyed UID",
    "K": "kept",
    "C": "cleaned (identifying parts replaced)",
    "metadata_removed": "metadata entries removed (text chunks, EXIF, NIfTI description)",
}


class ActionRow(TypedDict):
    kind: str  # file kind: dicom, png, jpeg, tiff, nifti
    action: str  # manifest action class (PS3.15 code or metadata_removed)
    meaning: str
    files: int  # written files where the action applied at least once
    count: int  # attributes (or metadata entries) it applied to, over all files


class MetricSummary(TypedDict):
    files: int
    mean: float
    min: float
    max: float


class PixelSection(TypedDict):
    cleaner: str  # "" when no pixel cleaner ran
    settings: dict[str, Any]  # the cleaner's strength, seed and optimiser settings
    status_counts: dict[str, int]  # unchanged / lossless / cleaned -> written files
    metrics: dict[str, MetricSummary]  # per metric the pixel cleaner recorded
    measured: dict[str, Any] | None  # the frontier benchmark's figures for these settings


class ProblemRow(TypedDict):
    path: str  # release-relative, PHI-looking tokens masked
    status: str  # quarantined or skipped
    reason: str


class ScoreSection(TypedDict):
    scored: bool  # False: no comparison (see note)
    note: str | None  # why a part is missing (no checkpoint, --no-score)
    checkpoint: dict[str, Any] | None  # as in the score report
    reports: dict[str, str | None]  # side -> relative link to that side's full score report
    comparison: Comparison


class ScrubResults(TypedDict):
    schema_version: int
    report: str  # always "scrub"
    tool: dict[str, str]
    created_utc: str
    command: str
    run: dict[str, Any]  # counts, speed, options, CID 7050 codes, key fingerprint
    actions: list[ActionRow]
    pixels: PixelSection
    problems: list[ProblemRow]
    score: ScoreSection
    limitations: list[str]


def _actions(entries: tuple[FileEntry, ...]) -> list[ActionRow]:
    files: Counter[tuple[str, str]] = Counter()
    counts: Counter[tuple[str, str]] = Counter()
    for entry in entries:
        if entry.status != "written":
            continue
        for action, count in entry.actions.items():
            if count > 0:
                files[entry.kind, action] += 1
                counts[entry.kind, action] += count
    return [
        {
            "kind": kind,
            "action": action,
            "meaning": ACTION_MEANINGS.get(action, "other"),
            "files": files[kind, action],
            "count": counts[kind, action],
        }
        for kind, action in sorted(counts)
    ]


def _pixels(summary: ScrubSummary) -> PixelSection:
    statuses = Counter(e.pixels for e in summary.entries if e.status == "written" and e.pixels)
    values: dict[str, list[float]] = defaultdict(list)
    for entry in summary.entries:
        for name, value in entry.pixel_metrics.items():
            values[name].append(float(value))
    metrics: dict[str, MetricSummary] = {
        # infinite PSNR (pixels unchanged) has no JSON form: only finite values are summarised
        name: {
            "files": len(finite),
            "mean": sum(finite) / len(finite),
            "min": min(finite),
            "max": max(finite),
        }
        for name, found in sorted(values.items())
        if (finite := [v for v in found if abs(v) != float("inf") and v == v])
    }
    from deid.scrub.frontier import measured_for

    header = summary.header
    settings = dict(header.pixel_settings) if header is not None else {}
    return {
        "cleaner": header.pixel_cleaner if header is not None else "",
        "settings": settings,
        "status_counts": dict(sorted(statuses.items())),
        "metrics": metrics,
        "measured": measured_for(settings),
    }


def _problems(summary: ScrubSummary) -> list[ProblemRow]:
    from deid.score.metadata import mask_path  # deid.score imports deid.report: import late

    return [
        {"path": mask_path(p.input), "status": p.status, "reason": p.reason}
        for p in summary.problems
    ]


def _run(summary: ScrubSummary) -> dict[str, Any]:
    header = summary.header
    return {
        "files": len(summary.entries),
        "counts": dict(summary.counts),
        "already_done": summary.already_done,
        "seconds": round(summary.seconds, 3),
        "files_per_second": round(summary.files_per_second, 2),
        "profile_options": list(header.options) if header else [],
        "cid7050_codes": list(header.codes) if header else [],
        "allow_burned_in": bool(header.allow_burned_in) if header else False,
        "key_fingerprint": header.key_fingerprint if header else "",
        "pseudonym_map_written": summary.map is not None,
    }


def _limitations(
    pixels: PixelSection, score: ScoreSection, problems: list[ProblemRow]
) -> list[str]:
    notes = []
    if not pixels["metrics"] and not pixels["status_counts"].get("cleaned"):
        notes.append(
            "Pixels were not perturbed: no pixel cleaner ran, so every image shows the same "
            "anatomy as the input and a re-identifier links the safe copy about as well as the "
            "input (see the pixel rows of the table). Metadata de-identification alone does not "
            "remove identity from the images."
        )
    else:
        notes.append(
            "Pixels were perturbed against one re-identifier. If the score after the scrub uses "
            "the same checkpoint, it is the attacker the scrub was optimised against and the "
            "improvement is optimistic: judge with an independently trained re-identifier. On "
            "phantom CT volumes the default strength left an independent re-identifier's linkage "
            "unchanged (benchmarks/RESULTS.md): do not rely on the pixel scrub alone for volumes."
        )
    notes.append(
        "Adaptive attackers: an attacker who fine-tunes a re-identifier on scrubbed images, or "
        "uses more or other outside data, can link more records than measured here; treat the "
        "figures after the scrub as a lower bound on linkability."
    )
    if pixels["settings"]:
        notes.append(_adaptive_note(pixels["settings"], pixels["measured"]))
    checkpoint = score["checkpoint"] or {}
    trained_on = str(checkpoint.get("trained_on") or "")
    if "phantom" in trained_on.lower():
        notes.append(
            f"The re-identifier that scored both copies was trained on {trained_on}: phantom "
            "patients are synthetic, so the numbers show how the audit works and are not a "
            "risk estimate for real images until a checkpoint trained on real data is used."
        )
    if not score["comparison"]["pixels_measured"]:
        notes.append(
            "Pixel-level linkage was not measured"
            + (f": {score['note']}" if score["note"] else ".")
        )
    if problems:
        notes.append(
            f"{len(problems)} file(s) were quarantined or skipped and are not in the safe copy; "
            "review them by hand (the pseudonym map, if written, resolves them) before adding "
            "them to a release."
        )
    notes.append(
        "Metadata rules are pattern based: free text, burned-in text not declared in the header, "
        "and unusual private tags can slip through; inspect a sample of the safe copy."
    )
    return notes


def _adaptive_note(settings: Mapping[str, Any], measured: Mapping[str, Any] | None) -> str:
    """What the frontier benchmark measured for these pixel settings, or that it did not."""
    name = settings.get("strength", "custom")
    if measured is None or "adaptive" not in measured:
        return (
            f"The pixel settings of this scrub (strength {name}) were not measured against an "
            "adaptive attacker; run benchmarks/scrub_frontier.py with them before relying on "
            "the pixel scrub."
        )
    source = measured["source"]
    text = (
        f"Measured for these pixel settings (strength {name}) on {source['data']}, "
        f"{source['split']} split ({source['date']}): an adaptive attacker, the independent "
        "attacker fine-tuned on scrubbed images, reached verification AUC "
        f"{measured['adaptive']['auc']:.2f} (0.5 is chance; the goal is at most 0.70)"
    )
    if "attacker" in measured:
        text += (
            f"; the independent attacker without fine-tuning reached rank-1 "
            f"{measured['attacker']['rank1']:.2f} (chance {measured['rank1_chance']:.2f}) and "
            f"AUC {measured['attacker']['auc']:.2f}"
        )
    if "diagnosis_auc_drop" in measured:
        text += f"; the diagnosis model's AUC fell by {measured['diagnosis_auc_drop']:.3f}"
    return text + ". Phantom figures; see benchmarks/RESULTS.md."


def scrub_results(
    summary: ScrubSummary,
    *,
    input_score: Mapping[str, Any] | None,
    output_score: Mapping[str, Any] | None,
    command: str,
    score_note: str | None = None,
    score_reports: Mapping[str, str | None] | None = None,
) -> ScrubResults:
    """Assemble the scrub report's results dict.

    Parameters
    ----------
    summary : ScrubSummary
        What :func:`deid.scrub.scrub_release` returned (not a dry run).
    input_score, output_score : Mapping or None
        ``deid score`` results of the input and of the safe copy (full, or metadata-only with
        ``metadata`` and ``scope``); None when not scored.
    command : str
        The command line that produced the scrub.
    score_note : str, optional
        Why scores (or their pixel part) are missing, shown in the report.
    score_reports : Mapping, optional
        ``{"input": link, "output": link}``: relative links to the two full score reports.

    Returns
    -------
    ScrubResults
        Plain, finite JSON values only.

    Raises
    ------
    InputError
        If a value is not JSON (e.g. a NaN in a score).
    """
    pixels = _pixels(summary)
    problems = _problems(summary)
    sides = [s for s in (input_score, output_score) if s is not None]
    checkpoint = next((dict(s["checkpoint"]) for s in sides if s.get("checkpoint")), None)
    score: ScoreSection = {
        "scored": bool(sides),
        "note": score_note,
        "checkpoint": checkpoint,
        "reports": {
            "input": (score_reports or {}).get("input"),
            "output": (score_reports or {}).get("output"),
        },
        "comparison": compare_scores(input_score, output_score),
    }
    results: ScrubResults = {
        "schema_version": SCRUB_SCHEMA_VERSION,
        "report": "scrub",
        "tool": {"name": "mami-deid", "version": __version__},
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "run": _run(summary),
        "actions": _actions(summary.entries),
        "pixels": pixels,
        "problems": problems,
        "score": score,
        "limitations": _limitations(pixels, score, problems),
    }
    _check_json(results, "scrub results")
    return results
