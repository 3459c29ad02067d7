"""``deid synth``: write a phantom release with fake PHI and its truth CSV."""

from __future__ import annotations

from pathlib import Path

import click

from deid.cli.options import library_errors_to_click, quiet_option, seed_option

_SPLITS = ("all", "train", "val", "test")


def _parse_datasets(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    """Accept ``--datasets a,b`` and repeated ``--datasets a --datasets b``; validate names."""
    from reid_model.phantoms.types import DATASETS  # numpy only: cheap

    names = [n.strip() for item in value for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise click.BadParameter(
            f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)}"
        )
    return tuple(dict.fromkeys(names)) or tuple(DATASETS)


@click.command()
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--patients",
    type=click.IntRange(min=1),
    required=True,
    help="Patients per dataset (before keeping one split).",
)
@click.option(
    "--visits", type=click.IntRange(min=1), default=2, show_default=True, help="Visits per patient."
)
@click.option(
    "--datasets",
    multiple=True,
    callback=_parse_datasets,
    help="Comma list or repeated; default: all phantom datasets.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dicom", "png", "both"]),
    default="dicom",
    show_default=True,
    help="File format; 'both' writes dicom/ and png/ sub-folders.",
)
@click.option(
    "--split",
    type=click.Choice(_SPLITS),
    default="all",
    show_default=True,
    help="Keep only patients of this split (patient-disjoint train/val/test).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Write into a non-empty OUT, replacing files of the same name.",
)
@seed_option
@quiet_option
@library_errors_to_click
def synth(
    out: Path,
    patients: int,
    visits: int,
    datasets: tuple[str, ...],
    fmt: str,
    split: str,
    overwrite: bool,
    seed: int,
    quiet: bool,
) -> None:
    """Write a phantom release with fake PHI into OUT, and OUT.truth.csv beside it.

    The release looks like a careless export: names, IDs and dates in DICOM headers, a private
    block, burned-in text in some images and, for PNG, in file names. The truth CSV maps each
    file to its phantom patient, visit, split and findings.
    """
    from deid.synth import write_release
    from deid.synth.release import check_output_folder

    check_output_folder(out, overwrite)  # fail before the (slow) generator is imported
    from reid_model.phantoms.generator import generate

    splits = None if split == "all" else [split]
    images = generate(datasets, patients, visits, seed, splits=splits)
    summary = write_release(out, images, fmt, seed, progress=not quiet, overwrite=overwrite)
    if not quiet:
        click.echo(
            f"wrote {summary.n_files} files ({summary.n_images} images, {summary.n_patients} "
            f"patients) to {summary.out} in {summary.seconds:.1f} s; truth: {summary.truth}"
        )
