"""Report figures: matplotlib (Agg, no pyplot state) rendered to base64 PNG for inline embedding.

PNG rather than inline SVG: an ``<img src="data:...">`` cannot carry markup, so text that came
from a file (dataset names in legends) can never inject anything into the page.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from deid.report.schema import GroupMetrics, Histogram

_SAME = "#b5403a"
_DIFFERENT = "#4a6fa5"
_PALETTE = ("#1b4965", "#b5403a", "#5b8e7d", "#c28f2c", "#7d5ba6", "#6b6b6b", "#2a9d8f")
_RISK = "#8c2f39"


def _new_figure(width: float = 5.2, height: float = 3.2) -> Figure:
    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax, xlabel: str, ylabel: str) -> None:  # type: ignore[no-untyped-def]
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(alpha=0.25, linewidth=0.6)


def _to_base64(fig: Figure) -> str:
    buffer = io.BytesIO()
    # no Software/date metadata: the same numbers give the same bytes
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _bars(ax, hist: Histogram, color: str, label: str | None, density: bool) -> None:  # type: ignore[no-untyped-def]
    edges, counts = hist["edges"], hist["counts"]
    total = sum(counts)
    widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    heights = [
        (c / (total * w) if density and total else c) for c, w in zip(counts, widths, strict=True)
    ]
    ax.bar(
        edges[:-1],
        heights,
        width=widths,
        align="edge",
        color=color,
        alpha=0.6,
        edgecolor=color,
        linewidth=0.5,
        label=label,
    )


def risk_histogram(hist: Histogram, threshold: float) -> str:
    """Per-record risk (strongest-link P(same patient)) with the threshold marked."""
    fig = _new_figure()
    ax = fig.add_subplot()
    _bars(ax, hist, _RISK, None, density=False)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
    ax.annotate(
        f"threshold {threshold:.2f}",
        (threshold, 1),
        xycoords=("data", "axes fraction"),
        xytext=(4, -12),
        textcoords="offset points",
        fontsize=8,
    )
    ax.set_xlim(0, 1)
    _style(ax, "P(same patient) of the strongest link", "records")
    return _to_base64(fig)


def similarity_histograms(same: Histogram, different: Histogram) -> str:
    """Same-patient versus different-patient cosine similarity, each normalised to density."""
    fig = _new_figure()
    ax = fig.add_subplot()
    _bars(ax, different, _DIFFERENT, f"different patients (n={sum(different['counts'])})", True)
    _bars(ax, same, _SAME, f"same patient (n={sum(same['counts'])})", True)
    ax.legend(fontsize=8, frameon=False)
    _style(ax, "cosine similarity of embeddings", "density")
    return _to_base64(fig)


def cmc_curves(groups: Mapping[str, GroupMetrics]) -> str:
    """CMC curve (share of queries whose first correct match is within rank k) per group."""
    fig = _new_figure()
    ax = fig.add_subplot()
    for color, (name, group) in zip(_PALETTE * 4, groups.items(), strict=False):
        ranks = group["cmc_ranks"]
        ax.plot(
            ranks,
            group["cmc"],
            marker="o",
            markersize=3,
            linewidth=1.4,
            color=color,
            label=name,
            linestyle="-" if name == "all" else "--",
        )
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    _style(ax, "rank k", "matched within rank k")
    return _to_base64(fig)


def roc_curves(groups: Mapping[str, GroupMetrics]) -> str:
    """Verification ROC per group, false-accept rate on a log axis."""
    fig = _new_figure()
    ax = fig.add_subplot()
    for color, (name, group) in zip(_PALETTE * 4, groups.items(), strict=False):
        if not group["roc_fpr"]:
            continue
        # the log axis cannot show FAR 0; start the curve at the smallest positive rate
        points = [(f, t) for f, t in zip(group["roc_fpr"], group["roc_tpr"], strict=True) if f > 0]
        if not points:
            continue
        auc = "n/a" if group["auc"] is None else f"{group['auc']:.3f}"
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            linewidth=1.4,
            color=color,
            label=f"{name} (AUC {auc})",
            linestyle="-" if name == "all" else "--",
        )
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0, 1.02)
    ax.axvline(1e-3, color="grey", linewidth=0.8, linestyle=":")
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    _style(ax, "false accept rate", "true accept rate")
    return _to_base64(fig)


def best_match_histogram(hist: Histogram, threshold: float) -> str:
    """P(same patient) of each release image's best match in the identified gallery."""
    fig = _new_figure()
    ax = fig.add_subplot()
    _bars(ax, hist, _DIFFERENT, None, density=False)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    _style(ax, "P(same patient) of the best gallery match", "release images")
    return _to_base64(fig)
