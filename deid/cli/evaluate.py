"""``deid evaluate``: retrieval and verification metrics of a re-identifier, per dataset."""

from __future__ import annotations

import json
from pathlib import Path

import click

from deid.cli.options import library_errors_to_click, seed_option

# (metric key, column title) of the printed table
COLUMNS = (
    ("rank1", "rank-1"),
    ("rank5", "rank-5"),
    ("rank10", "rank-10"),
    ("mAP", "mAP"),
    ("auc", "AUC"),
    ("tar_at_far", "TAR@1e-3"),
)


@click.command()
@click.option(
    "--checkpoint",
    required=True,
    help="Checkpoint folder (for example RUN/model) or a shipped name (mami-demo).",
)
@click.option(
    "--data",
    required=True,
    help="A release folder with its truth CSV, or phantom:<datasets|all>:<patients>:"
    "<visits>[:seed].",
)
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test"]),
    default="test",
    show_default=True,
    help="Patients to evaluate on (test: unseen in training).",
)
@click.option(
    "--bootstrap",
    "n_boot",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Bootstrap resamples of patients for 95% intervals.",
)
@seed_option
@click.option("--device", help="cpu or cuda (default: cuda when available).")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="DataLoader workers that render or decode images.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the full results (intervals included) to this JSON file.",
)
@library_errors_to_click
def evaluate(
    checkpoint: str,
    data: str,
    split: str,
    n_boot: int,
    seed: int,
    device: str | None,
    workers: int,
    json_path: Path | None,
) -> None:
    """Score how well a checkpoint re-identifies patients, per dataset: CMC rank-1/5/10 and mAP
    (query: one visit per patient, gallery: the other visits), verification ROC AUC and TAR at
    FAR 1e-3, with 95% bootstrap intervals over patients."""
    from deid.io.atomic import atomic_write_text
    from reid_model.evaluate import evaluate_checkpoint

    results = evaluate_checkpoint(
        checkpoint, data, split=split, n_boot=n_boot, seed=seed, device=device, num_workers=workers
    )
    click.echo(format_table(results["datasets"]))
    click.echo(
        f"[low,high]: 95% bootstrap interval over query patients ({n_boot} resamples); "
        f"{split} split; overall = all queries against all gallery images"
    )
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(results, indent=2) + "\n")
        click.echo(f"results written to {json_path}")


def format_table(datasets: dict[str, dict]) -> str:
    """One line per dataset: the metric columns, with the 95% interval when there is one."""
    width = max([len("dataset"), *(len(name) for name in datasets)])
    lines = ["dataset".ljust(width) + "".join(f"  {title:>20}" for _, title in COLUMNS)]
    for name, metrics in datasets.items():
        cells = []
        for key, _ in COLUMNS:
            value = metrics.get(key)
            ci = metrics.get("ci95", {}).get(key)
            text = "n/a" if value is None else f"{value:.3f}"
            if value is not None and ci is not None and all(c == c for c in ci):  # c == c: not NaN
                text += f" [{ci[0]:.2f},{ci[1]:.2f}]"
            cells.append(f"  {text:>20}")
        lines.append(name.ljust(width) + "".join(cells))
    return "\n".join(lines)
