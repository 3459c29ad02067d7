"""``deid demo``: the main job end to end on phantom patients: synth → score."""

from __future__ import annotations

from pathlib import Path

import click

from deid.cli.options import library_errors_to_click, quiet_option
from deid.cli.score import progress_bar, step_logger

DEFAULT_DIR = Path("deid-demo")


@click.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--patients",
    type=click.IntRange(min=1),
    default=40,
    show_default=True,
    help="Phantom patients per dataset before keeping the test split (about 1 in 5).",
)
@click.option("--visits", type=click.IntRange(min=2), default=3, show_default=True)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="Re-identifier checkpoint. [default: the shipped mami-demo]",
)
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Reuse a DIRECTORY that holds an earlier demo.")
@quiet_option
@library_errors_to_click
def demo(
    directory: Path | None,
    patients: int,
    visits: int,
    checkpoint: Path | None,
    workers: int,
    seed: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Write a phantom release with fake PHI into DIRECTORY (default ./deid-demo), score it, and
    print where the report is.

    Test-split patients only: the shipped checkpoint never saw them in training.
    """
    from deid.score import ScoreOptions, score_release
    from deid.synth import write_release
    from deid.synth.release import check_output_folder
    from reid_model.phantoms.generator import generate
    from reid_model.phantoms.types import DATASETS

    folder = directory or DEFAULT_DIR
    release = folder / "release"
    say = step_logger(quiet)
    check_output_folder(release, overwrite)
    say(f"1/2 synth: phantom patients of every dataset, {visits} visits, into {release}")
    images = generate(list(DATASETS), patients, visits, seed, splits=["test"])
    summary = write_release(release, images, "dicom", seed, progress=not quiet, overwrite=overwrite)
    say(
        f"    {summary.n_images} images of {summary.n_patients} patients in {summary.n_files} files"
    )

    say("2/2 score: re-identification risk of the release, with its answer key")
    options = ScoreOptions(
        truth=summary.truth,
        checkpoint=checkpoint,
        out=folder / "release-report",
        workers=workers,
        seed=seed,
        n_boot=200,
    )
    outcome = score_release(release, options, progress=progress_bar(quiet), log=say)
    verdict = outcome.verdict
    click.echo(f"{verdict.level.upper()}: {verdict.headline}")
    click.echo(f"report: {outcome.paths.html}")
    click.echo(f"numbers: {outcome.paths.json}")
