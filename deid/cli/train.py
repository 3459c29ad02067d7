"""``deid train``: train the re-identifier, the phantom MFM or the phantom diagnosis model."""

from __future__ import annotations

import os
from pathlib import Path

import click

from deid.cli.options import library_errors_to_click, quiet_option


@click.command()
@click.option(
    "--task",
    type=click.Choice(["reid", "mfm", "diagnosis"]),
    default="reid",
    show_default=True,
    help="reid: the MaMI re-identifier; mfm: the phantom foundation model used for "
    "alignment and scrubbing; diagnosis: the independent findings classifier.",
)
@click.option(
    "--preset",
    default="demo",
    show_default=True,
    help="Named preset (test, demo, paper) or a preset JSON file.",
)
@click.option(
    "--data",
    required=True,
    help="A release folder written by `deid synth` (its <folder>.truth.csv beside it), "
    "or phantom:<datasets|all>:<patients>:<visits>[:seed] to render in memory.",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder: checkpoints, history.json and the final model/.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the preset's epochs.")
@click.option("--seed", type=int, help="Override the preset's seed (same seed, same weights).")
@click.option(
    "--images-per-epoch",
    type=click.IntRange(min=1),
    help="reid: override images per epoch (default: one pass over the training split).",
)
@click.option("--device", help="cpu or cuda (default: cuda when available).")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="DataLoader workers that render or decode images.",
)
@click.option(
    "--stop-after",
    type=click.IntRange(min=1),
    help="reid: stop after this many epochs of this invocation; continue later with --resume.",
)
@quiet_option
@library_errors_to_click
def train(
    task: str,
    preset: str,
    data: str,
    out: Path,
    resume: bool,
    epochs: int | None,
    seed: int | None,
    images_per_epoch: int | None,
    device: str | None,
    workers: int,
    stop_after: int | None,
    quiet: bool,
) -> None:
    """Train a model and write its checkpoint to OUT/model.

    Runs under torchrun for several GPUs or processes:
    `torchrun --nproc_per_node 2 -m reid_model.train --data ... --out ...`.
    """
    if task == "reid":
        from reid_model.train import TrainOptions, train_reid

        final = train_reid(
            TrainOptions(
                preset=preset,
                data=data,
                out=out,
                resume=resume,
                epochs=epochs,
                seed=seed,
                images_per_epoch=images_per_epoch,
                device=device,
                num_workers=workers,
                quiet=quiet,
                stop_after=stop_after,
            )
        )
    else:
        if stop_after is not None or images_per_epoch is not None:
            raise click.UsageError(
                f"--stop-after and --images-per-epoch apply to --task reid only, not {task}"
            )
        from reid_model.train_mfm import AuxTrainOptions, train_auxiliary

        final = train_auxiliary(
            AuxTrainOptions(
                task=task,
                preset=preset,
                data=data,
                out=out,
                resume=resume,
                epochs=epochs,
                seed=seed,
                device=device,
                num_workers=workers,
                quiet=quiet,
            )
        )
    if not quiet and os.environ.get("RANK", "0") == "0":  # under torchrun: the main process
        click.echo(f"checkpoint written to {final}")
