"""``deid demo``: the main job end to end on phantom patients: synth → score → scrub → score,
and the scrub report that sets the two scores side by side."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from deid.cli.options import library_errors_to_click, quiet_option, strength_option
from deid.cli.score import progress_bar, step_logger

if TYPE_CHECKING:
    from deid.score import ScoreOutcome

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
@click.option(
    "--pixels/--no-pixels",
    default=None,
    help="Also perturb the pixels against the re-identifier (the pixel scrub of `deid scrub`). "
    "[default: on with a CUDA GPU; off on a CPU, where a phantom CT volume takes about 30 s]",
)
@strength_option
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
    pixels: bool | None,
    strength: str,
    workers: int,
    seed: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Write a phantom release with fake PHI into DIRECTORY (default ./deid-demo), score it,
    scrub it, score the safe copy, and print where the reports are (the scrub report puts the
    two scores side by side).

    Test-split patients only: the shipped checkpoint never saw them in training. The scrub is
    PS3.15 metadata de-identification, plus the pixel scrub of `deid scrub` with --pixels (the
    default when a CUDA GPU is present).
    """
    import torch

    from deid.cli.scrub import pixel_cleaner_from_options
    from deid.report.scrub_render import write_scrub_report
    from deid.score import ScoreOptions, score_release
    from deid.scrub import scrub_release
    from deid.scrub.report import scrub_side_files
    from deid.synth import write_release
    from deid.synth.release import check_output_folder
    from reid_model.phantoms.generator import generate
    from reid_model.phantoms.types import DATASETS

    folder = directory or DEFAULT_DIR
    release, scrubbed = folder / "release", folder / "release-scrubbed"
    say = step_logger(quiet)
    check_output_folder(release, overwrite)
    say(f"1/4 synth: phantom patients of every dataset, {visits} visits, into {release}")
    images = generate(list(DATASETS), patients, visits, seed, splits=["test"])
    summary = write_release(release, images, "dicom", seed, progress=not quiet, overwrite=overwrite)
    say(
        f"    {summary.n_images} images of {summary.n_patients} patients in {summary.n_files} files"
    )

    def run_score(
        target: Path, truth: Path | None, step: str, exclude: Callable[[Path], bool] | None = None
    ) -> ScoreOutcome:
        say(step)
        options = ScoreOptions(
            truth=truth,
            checkpoint=checkpoint,
            out=folder / f"{target.name}-report",
            workers=workers,
            seed=seed,
            n_boot=200,
        )
        return score_release(
            target, options, progress=progress_bar(quiet), log=say, exclude=exclude
        )

    before = run_score(release, summary.truth, "2/4 score the release, with its answer key")
    if pixels is None:
        pixels = torch.cuda.is_available()
    cleaner = None
    if pixels:
        say(f"3/4 scrub: PS3.15 de-identification and pixel scrub ({strength}) into {scrubbed}")
        adversary = (str(checkpoint),) if checkpoint else ()
        cleaner = pixel_cleaner_from_options(adversary, strength, None, None, "auto", release)
    else:
        say(
            f"3/4 scrub: PS3.15 de-identification (pixels kept: --pixels adds them) into {scrubbed}"
        )
    scrub_summary = scrub_release(
        release,
        scrubbed,
        overwrite=overwrite,
        workers=max(1, workers),
        pixel_cleaner=cleaner,
        progress=not quiet,
    )
    # the scrub renames files, so the answer key no longer applies; keyed pseudonyms keep one
    # patient under one ID, and the score uses those as identities
    after = run_score(scrubbed, None, "4/4 score the safe copy", scrub_side_files(scrubbed))
    for label, outcome in (("release", before), ("safe copy", after)):
        verdict, linkage = outcome.verdict, outcome.results["linkage"]
        click.echo(
            f"{label}: {verdict.level.upper()}: {linkage['share_at_risk']:.1%} of records at risk, "
            f"{outcome.results['metadata']['direct_identifier_files']} files with direct "
            f"identifiers; report: {outcome.paths.html}"
        )
    scrub_report = write_scrub_report(
        scrub_summary,
        folder / "scrub-report",
        input_score=before.results,
        output_score=after.results,
        command=shlex.join(
            ["deid", "demo", str(folder), "--patients", str(patients), "--visits", str(visits)]
            + ["--seed", str(seed)]
            + (["--checkpoint", str(checkpoint)] if checkpoint else [])
            + (["--pixels", "--strength", strength] if pixels else ["--no-pixels"])
        ),
        score_reports={"input": before.paths.html, "output": after.paths.html},
    )
    click.echo(f"scrub report (input beside safe copy): {scrub_report.html}")
