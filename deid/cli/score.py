"""``deid score``: the re-identification risk audit of a release."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import click

from deid.cli.options import library_errors_to_click, quiet_option

T = TypeVar("T")

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_RISK = 3


def progress_bar(quiet: bool) -> Callable[[Iterable[T], str, int], Iterable[T]]:
    """A ``progress(iterable, description, total)`` callable: tqdm on stderr, or none if quiet."""

    def wrap(iterable: Iterable[T], description: str, total: int) -> Iterable[T]:
        if quiet:
            return iterable
        from tqdm import tqdm

        return tqdm(iterable, desc=description, total=total, unit="img", file=sys.stderr)

    return wrap


def step_logger(quiet: bool) -> Callable[[str], None]:
    return (lambda _line: None) if quiet else (lambda line: click.echo(f"· {line}", err=True))


@click.command(
    epilog="Exit codes: 0 verdict green or amber; 3 verdict red (records at risk above "
    "--fail-above, or direct identifiers in headers, paths or embedded text); 2 usage or input "
    "error (missing folder, no images, bad truth CSV, corrupt checkpoint)."
)
@click.argument("release", type=click.Path(path_type=Path))
@click.option(
    "--truth",
    type=click.Path(path_type=Path),
    help="Truth CSV (file, patient, dataset, visit, ...) for CMC/mAP/AUC with intervals.",
)
@click.option(
    "--gallery",
    type=click.Path(path_type=Path),
    help="Folder of identified images to link the release against.",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="Re-identifier checkpoint folder. [default: the shipped mami-demo]",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Report folder. [default: RELEASE-report beside the release]",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.5,
    show_default=True,
    help="P(same patient) at which a link puts a record at risk.",
)
@click.option(
    "--fail-above",
    type=click.FloatRange(0.0, 1.0),
    default=0.05,
    show_default=True,
    help="Largest share of records at risk that still passes.",
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="Decoding processes (0: decode in the main process).",
)
@click.option(
    "--thumbnails",
    is_flag=True,
    help="Embed small previews in the report (they are PHI: handle the report like the release).",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    help="Embedding cache. [default: ~/.cache/mami-deid/embeddings]",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache.")
@click.option(
    "--n-boot",
    type=click.IntRange(0),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for the 95% intervals.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@quiet_option
@library_errors_to_click
def score(
    release: Path,
    truth: Path | None,
    gallery: Path | None,
    checkpoint: Path | None,
    out: Path | None,
    threshold: float,
    fail_above: float,
    device: str,
    batch_size: int,
    workers: int,
    thumbnails: bool,
    cache_dir: Path | None,
    no_cache: bool,
    n_boot: int,
    seed: int,
    quiet: bool,
) -> None:
    """Measure how re-identifiable the images in RELEASE are and write report.html + report.json."""
    from deid.score import ScoreOptions, score_release

    options = ScoreOptions(
        truth=truth,
        gallery=gallery,
        checkpoint=checkpoint,
        out=out,
        threshold=threshold,
        fail_above=fail_above,
        device=device,
        batch_size=batch_size,
        workers=workers,
        thumbnails=thumbnails,
        cache_dir=cache_dir,
        use_cache=not no_cache,
        n_boot=n_boot,
        seed=seed,
    )
    outcome = score_release(release, options, progress=progress_bar(quiet), log=step_logger(quiet))
    verdict = outcome.verdict
    click.echo(f"{verdict.level.upper()}: {verdict.headline}")
    if not quiet:
        for reason in verdict.reasons:
            click.echo(f"  - {reason}")
    click.echo(f"report: {outcome.paths.html}")
    click.echo(f"numbers: {outcome.paths.json}")
    if verdict.level == "red":
        sys.exit(EXIT_RISK)
