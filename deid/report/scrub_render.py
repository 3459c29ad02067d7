"""Write the scrub report: ``report.json`` and a self-contained ``report.html`` in the look of
the score report (same jinja2 environment, CSS and figure embedding)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deid.errors import OutputError
from deid.io.atomic import atomic_write_text
from deid.report import figures
from deid.report.render import ReportPaths, _environment
from deid.report.schema import Histogram
from deid.report.scrub_results import ScrubResults, scrub_results

if TYPE_CHECKING:
    from deid.scrub import ScrubSummary

TEMPLATE = "scrub_report.html.j2"
_INPUT, _OUTPUT = "#6b6b6b", "#1b4965"


def risk_before_after(before: Histogram, after: Histogram, threshold: float) -> str:
    """Per-record risk of the input and of the safe copy on one axis, as base64 PNG."""
    fig = figures._new_figure()
    ax = fig.add_subplot()
    figures._bars(ax, before, _INPUT, f"input (n={sum(before['counts'])})", density=False)
    figures._bars(ax, after, _OUTPUT, f"safe copy (n={sum(after['counts'])})", density=False)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8, frameon=False, loc="upper center")
    figures._style(ax, "P(same patient) of the strongest link", "records")
    return figures._to_base64(fig)


def render_scrub_html(
    results: ScrubResults, histograms: Mapping[str, Histogram] | None = None
) -> str:
    """Render the scrub report.

    Parameters
    ----------
    results : ScrubResults
        See :func:`deid.report.scrub_results.scrub_results`.
    histograms : Mapping, optional
        ``{"input": ..., "output": ...}`` per-record risk histograms; with both, the report
        shows them on one figure.

    Returns
    -------
    str
        One self-contained HTML document: inline CSS, figures as data URIs, no scripts.
    """
    fig: dict[str, str] = {}
    threshold = results["score"]["comparison"]["threshold"]
    if histograms and "input" in histograms and "output" in histograms and threshold is not None:
        fig["risk"] = risk_before_after(histograms["input"], histograms["output"], threshold)
    template = _environment().get_template(TEMPLATE)
    return template.render(r=results, fig=fig)


def _histogram(score: Mapping[str, Any] | None) -> Histogram | None:
    if score is None or not isinstance(score.get("linkage"), Mapping):
        return None
    return score["linkage"]["risk_histogram"]


def write_scrub_report(
    summary: ScrubSummary,
    out_dir: str | os.PathLike[str],
    *,
    input_score: Mapping[str, Any] | None,
    output_score: Mapping[str, Any] | None,
    command: str,
    score_note: str | None = None,
    score_reports: Mapping[str, Path] | None = None,
) -> ReportPaths:
    """Write the scrub report (``report.json`` and ``report.html``) into ``out_dir``.

    Parameters
    ----------
    summary : ScrubSummary
        What :func:`deid.scrub.scrub_release` returned.
    out_dir : path
        Report folder, created if missing; never inside the safe copy.
    input_score, output_score : Mapping or None
        ``deid score`` results of the input and of the safe copy, or None when not scored.
    command : str
        The command line of the scrub, printed in the report.
    score_note : str, optional
        Why scores, or their pixel part, are missing.
    score_reports : Mapping, optional
        ``report.html`` of the two full score reports (``"input"``, ``"output"``); the report
        links to them relative to ``out_dir``.

    Returns
    -------
    ReportPaths
        Paths of the two files.

    Raises
    ------
    OutputError
        If ``out_dir`` is the safe copy or inside it (the copy must stay releasable as is), or
        cannot be written.
    InputError
        If a score holds a value JSON cannot represent.
    """
    out = Path(out_dir)
    safe = summary.out.resolve()
    if out.resolve() == safe or safe in out.resolve().parents:
        raise OutputError(
            f"the scrub report folder {out} is inside the safe copy {summary.out}; the report "
            "must not become part of the release: choose --report-dir outside it"
        )
    results = scrub_results(
        summary,
        input_score=input_score,
        output_score=output_score,
        command=command,
        score_note=score_note,
        score_reports={
            side: Path(os.path.relpath(Path(html).resolve(), out.resolve())).as_posix()
            for side, html in (score_reports or {}).items()
        },
    )
    histograms = {
        side: hist
        for side, score in (("input", input_score), ("output", output_score))
        if (hist := _histogram(score)) is not None
    }
    html = render_scrub_html(results, histograms)
    paths = ReportPaths(html=out / "report.html", json=out / "report.json")
    body = json.dumps(results, indent=1, ensure_ascii=False, allow_nan=False)
    try:
        atomic_write_text(paths.json, body + "\n")
        atomic_write_text(paths.html, html)
    except OSError as exc:
        raise OutputError(
            f"cannot write the scrub report to {out} ({exc}); choose another --report-dir"
        ) from exc
    return paths
