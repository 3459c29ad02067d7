"""``deid score``: measure how re-identifiable a release is and write its report."""

from deid.score.pipeline import (
    ScoreOptions,
    ScoreOutcome,
    default_report_dir,
    reproduce_command,
    score_release,
    shipped_checkpoint,
)

__all__ = [
    "ScoreOptions",
    "ScoreOutcome",
    "default_report_dir",
    "reproduce_command",
    "score_release",
    "shipped_checkpoint",
]
