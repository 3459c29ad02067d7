"""Write ``report.json`` and a self-contained ``report.html`` from a results dict."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from deid.io.atomic import atomic_write_text
from deid.report import figures
from deid.report.schema import Results, validate_results
from deid.report.verdict import decide_verdict

TEMPLATE = "report.html.j2"
# the HTML lists at most this many per-file findings; report.json holds all of them
HTML_FILE_ROWS = 50


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    json: Path


def _environment() -> jinja2.Environment:
    folder = resources.files("reports") / "templates"
    templates = {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".j2")
    }
    env = jinja2.Environment(
        loader=jinja2.DictLoader(templates),
        autoescape=True,  # every string that came from a file is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v, digits=1: "n/a" if v is None else f"{100 * v:.{digits}f}%"
    env.filters["num"] = lambda v, digits=3: "n/a" if v is None else f"{v:.{digits}f}"
    return env


def _figures(results: Mapping[str, Any]) -> dict[str, str]:
    link = results["linkage"]
    out = {"risk": figures.risk_histogram(link["risk_histogram"], link["threshold"])}
    truth = results["truth"]
    if truth is not None:
        out["similarity"] = figures.similarity_histograms(
            truth["similarity_same"], truth["similarity_different"]
        )
        out["cmc"] = figures.cmc_curves(truth["groups"])
        out["roc"] = figures.roc_curves(truth["groups"])
    gallery = results["gallery"]
    if gallery is not None:
        out["gallery"] = figures.best_match_histogram(
            gallery["best_match_probability"], link["threshold"]
        )
    return out


def render_html(results: Results) -> str:
    """Render the HTML report of a validated results dict.

    Parameters
    ----------
    results : Results
        See :mod:`deid.report.schema`.

    Returns
    -------
    str
        One self-contained HTML document: inline CSS, figures as data URIs, no scripts.
    """
    validate_results(results)
    template = _environment().get_template(TEMPLATE)
    return template.render(
        r=results,
        verdict=decide_verdict(results),
        fig=_figures(results),
        file_rows=results["metadata"]["per_file"][:HTML_FILE_ROWS],
        file_rows_left=max(0, len(results["metadata"]["per_file"]) - HTML_FILE_ROWS),
    )


def write_report(results: Results, out_dir: str | os.PathLike[str]) -> ReportPaths:
    """Write ``report.json`` (every number) and ``report.html`` into ``out_dir``.

    Parameters
    ----------
    results : Results
        The results dict; see :mod:`deid.report.schema`.
    out_dir : path
        Created if missing. Both files are written atomically.

    Returns
    -------
    ReportPaths
        Paths of the two files.

    Raises
    ------
    InputError
        If ``results`` does not follow the schema.
    """
    html = render_html(results)
    out = Path(out_dir)
    paths = ReportPaths(html=out / "report.html", json=out / "report.json")
    body = json.dumps(results, indent=1, ensure_ascii=False, allow_nan=False)
    atomic_write_text(paths.json, body + "\n")
    atomic_write_text(paths.html, html)
    return paths
