"""Print the model card of a shipped checkpoint from its training run folder.

    python tools/write_model_card.py NAME RUNS_DIR > reid_model/weights/NAME/MODEL_CARD.md

Reads RUNS_DIR/NAME/run.json (what was trained), RUNS_DIR/NAME/history.json (per-epoch
validation), RUNS_DIR/NAME.seconds (wall time) and, for re-identifiers, RUNS_DIR/NAME.eval.json
(the fresh test split written by ``deid evaluate --json``).
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import sys
from pathlib import Path

PURPOSE = {
    "mami-demo": "the default adversary of `deid score` and `deid scrub` (MaMI, `demo` preset)",
    "attacker-demo": "an independently trained re-identifier (other seed, other size), used only "
    "to judge scrubbing",
    "phantom-mfm": "the frozen phantom medical foundation model (findings + modality encoder) that "
    "MaMI aligns with and the scrubber preserves",
    "phantom-diagnosis": "an independent findings classifier, used only to judge diagnostic "
    "utility; it never guides a scrub",
}


def hardware() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"1x {torch.cuda.get_device_name(0)}, {_cpus()} CPU cores"
    except ImportError:
        pass
    return f"CPU only ({platform.machine()}), {_cpus()} CPU cores"


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _scalars(tree: object, prefix: str = "") -> list[tuple[str, float]]:
    """Flatten the numeric leaves of a JSON tree into (dotted.name, value) pairs."""
    if isinstance(tree, dict):
        return [pair for k, v in tree.items() for pair in _scalars(v, f"{prefix}{k}.")]
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return [(prefix.rstrip("."), float(tree))]
    return []


def card(name: str, runs: Path) -> str:
    run_dir = runs / name
    run = json.loads((run_dir / "run.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    seconds_file = runs / f"{name}.seconds"
    seconds = int(seconds_file.read_text()) if seconds_file.exists() else None
    settings_file = runs / "settings.txt"
    settings = " ".join(settings_file.read_text().split()) + " " if settings_file.exists() else ""
    lines = [
        f"# {name}",
        "",
        f"Purpose: {PURPOSE.get(name, 'see the README')}.",
        "",
        "| field | value |",
        "|---|---|",
        f"| task | {run.get('task', 'reid')} |",
        f"| preset | `{run.get('preset')}` |",
        f"| data | `{run.get('data')}` (synthetic phantom patients; train split for training, "
        "val split for validation and calibration) |",
        f"| seed | {run.get('seed')} |",
        f"| epochs | {len(history)} |",
        f"| command | `{settings}bash tools/train_shipped_checkpoints.sh` (this model's line) |",
        f"| hardware | {hardware()} |",
        f"| training wall time | {f'{seconds} s' if seconds is not None else 'not recorded'} |",
        f"| written | {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC |",
        "",
        "## Validation after the last epoch",
        "",
        "| metric | value |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {v:.4f} |" for k, v in _scalars(history[-1].get("val", {}))]
    eval_file = runs / f"{name}.eval.json"
    if eval_file.exists():
        lines += [
            "",
            "## Fresh test split",
            "",
            "`deid evaluate` on `phantom:all:<patients>:3:7` (seed 7: patients never seen in "
            "training), test split, 95% bootstrap intervals in the JSON.",
            "",
            "```",
            (runs / f"{name}.eval.txt").read_text().strip()
            if (runs / f"{name}.eval.txt").exists()
            else json.dumps(json.loads(eval_file.read_text()), indent=1)[:4000],
            "```",
        ]
    lines += [
        "",
        "Limitations: trained on phantoms only; not a measure of risk on real patients until "
        "retrained on real data.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(card(sys.argv[1], Path(sys.argv[2])))
