"""The risk report: a results dict (schema in :mod:`deid.report.schema`) becomes
``report.json`` and a self-contained ``report.html``."""

from deid.report.render import ReportPaths, render_html, write_report
from deid.report.schema import SCHEMA_VERSION, Results, histogram, validate_results
from deid.report.verdict import Verdict, decide_verdict

__all__ = [
    "SCHEMA_VERSION",
    "ReportPaths",
    "Results",
    "Verdict",
    "decide_verdict",
    "histogram",
    "render_html",
    "validate_results",
    "write_report",
]
