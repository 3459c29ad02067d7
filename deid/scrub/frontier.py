"""What the frontier benchmark measured for named pixel-scrub settings, shipped as data so the
scrub report can quote it (``benchmarks/scrub_frontier.py --summary`` writes the file)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deid.errors import InputError

MEASURED_PATH = Path(__file__).with_name("frontier_measured.json")
# describe() keys of a pixel cleaner that are not optimiser settings
_NOT_SETTINGS = ("strength", "seed")


def measured_for(settings: Mapping[str, Any], path: Path | None = None) -> dict[str, Any] | None:
    """The frontier row measured with exactly these optimiser settings, with the run that
    measured it under ``"source"``; None when no run measured them.

    ``settings`` is a pixel cleaner's description (its strength name and seed are ignored);
    ``path`` defaults to the shipped measurements.

    Raises
    ------
    InputError
        If the measurements file exists but is not what the benchmark writes.
    """
    path = path or MEASURED_PATH
    wanted = {k: v for k, v in settings.items() if k not in _NOT_SETTINGS}
    if not wanted or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows, source = data["rows"], data["source"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path}: not a frontier summary ({exc}); rewrite it with "
            "`python benchmarks/scrub_frontier.py ... --summary PATH`"
        ) from exc
    for row in rows:
        if row.get("settings") == wanted:
            return {**row, "source": source}
    return None
