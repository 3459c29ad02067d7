"""The report of a scrub: score the input and the safe copy with the re-identifier, then write
``SAFE-report/`` (``report.html`` + ``report.json``) beside the safe copy, never inside it.

Layout of the report folder::

    SAFE-report/report.html, report.json      the scrub report
    SAFE-report/input-score/report.*          the full ``deid score`` report of the input
    SAFE-report/safe-score/report.*           the full ``deid score`` report of the safe copy

Without a usable checkpoint both copies still get the metadata audit (it needs no model) and
the report says why pixel linkage is missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deid.errors import CheckpointError, InputError, OutputError
from deid.report.render import ReportPaths
from deid.report.scrub_render import write_scrub_report
from deid.scrub.folders import WORK_FOLDER, sidecar
from deid.scrub.manifest import JOURNAL_NAME, MANIFEST_NAME

if TYPE_CHECKING:
    from deid.score import ScoreOptions
    from deid.score.embed import Progress
    from deid.scrub import ScrubSummary

INPUT_SCORE, OUTPUT_SCORE = "input-score", "safe-score"


def default_scrub_report_dir(out: Path) -> Path:
    """``SAFE-report`` beside the safe copy ``SAFE``."""
    return sidecar(Path(out), "-report")


def scrub_side_files(safe: Path) -> Callable[[Path], bool]:
    """Discovery filter for the scrub's own files inside the safe copy (manifest, journal,
    scratch folder), so scoring the copy does not list them as unreadable images."""
    root = Path(safe).resolve()

    def is_side_file(path: Path) -> bool:
        try:
            relative = Path(path).resolve().relative_to(root)
        except ValueError:
            return False
        return relative.as_posix() in (MANIFEST_NAME, JOURNAL_NAME) or (
            relative.parts[:1] == (WORK_FOLDER,)
        )

    return is_side_file


def check_report_dir(folder: Path, release: Path, safe: Path) -> None:
    """Refuse a report folder that is the release or the safe copy, or inside either.

    Raises
    ------
    OutputError
        Naming the folder it is inside.
    """
    target = Path(folder).resolve()
    for name, where in (("release", Path(release)), ("safe copy", Path(safe))):
        inside = where.resolve()
        if target == inside or inside in target.parents:
            raise OutputError(
                f"the scrub report folder {folder} is inside the {name} {where}; reports must "
                "not become part of a release: choose --report-dir outside it"
            )


@dataclass(frozen=True)
class ScrubScores:
    """Scores of the input and the safe copy (full or metadata-only results dicts)."""

    input: dict[str, Any] | None
    output: dict[str, Any] | None
    note: str | None = None  # why a score, or its pixel part, is missing
    reports: dict[str, Path] = field(default_factory=dict)  # side -> full score report.html


def metadata_only(release: Path, exclude: Callable[[Path], bool] | None = None) -> dict[str, Any]:
    """The metadata audit of ``release`` without the re-identifier: ``metadata`` and ``scope``
    sections shaped as in a score results dict."""
    from deid.io import discover
    from deid.score.metadata import audit_release

    found = discover(release, exclude=exclude)
    root = release if release.is_dir() else release.parent
    audit = audit_release(found.items, found.skipped, root, [])
    n_files = sum(len(item.paths) for item in found.items) + len(found.skipped)
    return {
        "metadata": audit.metadata,
        "scope": {"n_files": n_files, "n_records": None, "n_skipped": len(found.skipped)},
    }


def score_scrub(
    release: Path,
    safe: Path,
    report_dir: Path,
    options: ScoreOptions,
    *,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> ScrubScores:
    """Score the input and the safe copy, each into its own folder under ``report_dir``.

    Parameters
    ----------
    release, safe : Path
        The scrub's input and output.
    report_dir : Path
        The scrub report folder; the two score reports go into its ``input-score`` and
        ``safe-score`` subfolders.
    options : ScoreOptions
        Options of both scores (``out`` is replaced per side).
    progress, log
        As for :func:`deid.score.score_release`.

    Returns
    -------
    ScrubScores
        Full results where the re-identifier ran; metadata-only results and a note where the
        checkpoint was unusable or a copy held no readable image.
    """
    from deid.score import score_release
    from deid.score.embed import no_progress

    sides = {"input": (Path(release), None), "output": (Path(safe), scrub_side_files(safe))}
    folders = {"input": INPUT_SCORE, "output": OUTPUT_SCORE}
    results: dict[str, dict[str, Any] | None] = {}
    reports: dict[str, Path] = {}
    notes: list[str] = []
    model_ok = True
    for side, (folder, exclude) in sides.items():
        if model_ok:
            side_options = dataclasses.replace(options, out=report_dir / folders[side])
            try:
                outcome = score_release(
                    folder, side_options, progress=progress or no_progress, log=log, exclude=exclude
                )
                results[side], reports[side] = dict(outcome.results), outcome.paths.html
                continue
            except CheckpointError as exc:
                model_ok = False
                notes.append(f"the re-identifier checkpoint could not be used ({exc})")
            except InputError as exc:  # e.g. a safe copy in which every file was held back
                notes.append(
                    f"the {'input' if side == 'input' else 'safe copy'} was not scored ({exc})"
                )
        results[side] = metadata_only(folder, exclude)
    return ScrubScores(results["input"], results["output"], "; ".join(notes) or None, reports)


def report_scrub(
    summary: ScrubSummary,
    release: Path,
    *,
    command: str,
    report_dir: Path | None = None,
    score: bool = True,
    options: ScoreOptions | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> ReportPaths:
    """Score both copies (unless ``score`` is False) and write the scrub report.

    Parameters
    ----------
    summary : ScrubSummary
        What :func:`deid.scrub.scrub_release` returned (not a dry run).
    release : Path
        The scrub's input.
    command : str
        The scrub's command line, printed in the report.
    report_dir : Path, optional
        Default :func:`default_scrub_report_dir` of the safe copy.
    score : bool
        False: write the report without the before/after scores.
    options : ScoreOptions, optional
        Score options (checkpoint, device, workers...); default ``ScoreOptions()``.
    progress, log
        As for :func:`deid.score.score_release`.

    Returns
    -------
    ReportPaths

    Raises
    ------
    OutputError
        If the report folder is inside the release or the safe copy, or cannot be written.
    """
    folder = Path(report_dir) if report_dir is not None else default_scrub_report_dir(summary.out)
    check_report_dir(folder, Path(release), summary.out)
    scores = ScrubScores(None, None, "scores were skipped (--no-score)")
    if score:
        from deid.score import ScoreOptions

        scores = score_scrub(
            Path(release),
            summary.out,
            folder,
            options or ScoreOptions(),
            progress=progress,
            log=log,
        )
    return write_scrub_report(
        summary,
        folder,
        input_score=scores.input,
        output_score=scores.output,
        command=command,
        score_note=scores.note,
        score_reports=scores.reports,
    )
