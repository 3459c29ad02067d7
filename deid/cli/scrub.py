"""``deid scrub``: write a de-identified, resumable safe copy of a release."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from deid.cli.options import library_errors_to_click, quiet_option, strength_option
from deid.dicom.options import ProfileOptions  # dataclasses only: cheap to import

if TYPE_CHECKING:
    from deid.scrub import PixelCleaner, ScrubSummary

_PROBLEMS_SHOWN = 20


def _split_names(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    names = [n.strip() for item in value for n in item.split(",") if n.strip()]
    known = ProfileOptions.option_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.BadParameter(
            f"unknown profile option(s) {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return tuple(dict.fromkeys(names))


def _safe_private(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[tuple[str, int, int], ...]:
    """Parse ``CREATOR:GGGG:EE`` (group and element low byte in hex)."""
    entries = []
    for text in value:
        try:
            creator, group, element = text.rsplit(":", 2)
            entries.append((creator.strip(), int(group, 16), int(element, 16)))
        except ValueError as exc:
            raise click.BadParameter(
                f"{text!r} is not CREATOR:GGGG:EE, e.g. GEMS_PARM_01:0043:27"
            ) from exc
    return tuple(entries)


def pixel_cleaner_from_options(
    adversaries: tuple[str, ...],
    strength: str,
    epsilon: float | None,
    steps: int | None,
    device: str,
    release: Path,
    pixel_settings: Sequence[str] = (),
) -> PixelCleaner:
    """The pixel identity-removal step: gradient steps against the re-identifier(s), with the
    frozen MFM and SSIM keeping the image (``deid.scrub.pixel_cleaner``). ``pixel_settings``
    are ``NAME=VALUE`` overrides of any optimiser setting; ``epsilon`` and ``steps`` win over
    them."""
    import torch

    from deid.scrub.pixel_cleaner import make_pixel_cleaner
    from deid.scrub.pixel_settings import parse_overrides
    from reid_model.evaluate import resolve_checkpoint

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return make_pixel_cleaner(
        [resolve_checkpoint(name) for name in adversaries or ("mami-demo",)],
        strength=strength,
        device=device,
        release=release,
        **{**parse_overrides(pixel_settings), "epsilon": epsilon, "steps": steps},
    )


@click.command(
    epilog="Beside OUT (never inside it) the run keeps OUT.key (the secret key, unless "
    "--key-file is given), OUT.map.json (only with --write-map) and OUT.plan.json (--dry-run); "
    "all owner-only. The scrub report (not owner-only; it names no patient) goes to OUT-report "
    "unless --report-dir is given."
)
@click.argument("release", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder of the safe copy; not the release, not inside it.",
)
@click.option(
    "--profile-options",
    "profile_options",
    multiple=True,
    callback=_split_names,
    help="PS3.15 options, comma list or repeated: "
    + ", ".join(ProfileOptions.option_names())
    + ".",
)
@click.option(
    "--safe-private",
    multiple=True,
    callback=_safe_private,
    help="Private attribute kept by retain-safe-private, as CREATOR:GGGG:EE; repeat.",
)
@click.option("--no-pixels", is_flag=True, help="Metadata only: Pixel Data stays bit-identical.")
@click.option(
    "--adversary",
    "adversaries",
    multiple=True,
    help="Re-identifier checkpoint the pixels are optimised against; repeat for an ensemble. "
    "[default: the shipped mami-demo]",
)
@strength_option
@click.option(
    "--epsilon",
    type=click.FloatRange(min=0, max=1),
    help="Override the L-inf budget (fraction of the image's intensity range).",
)
@click.option("--steps", type=click.IntRange(min=1), help="Override the gradient steps.")
@click.option(
    "--pixel-setting",
    "pixel_settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override any pixel optimiser setting, e.g. momentum=1 or lambda_mfm=2; repeat. "
    "Names: deid.scrub.pixel_settings.PixelSettings.",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where the pixel optimisation runs.",
)
@click.option(
    "--key-file",
    type=click.Path(path_type=Path),
    help="Secret key (64 hex digits, mode 600). [default: OUT.key, created if missing]",
)
@click.option("--resume", is_flag=True, help="Finish an interrupted scrub in OUT.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier scrub output in OUT.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Write the per-attribute plan to OUT.plan.json; write no images.",
)
@click.option(
    "--write-map",
    is_flag=True,
    help="Write the original -> pseudonym map to OUT.map.json (owner-only).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Files scrubbed in parallel processes.",
)
@click.option(
    "--allow-burned-in",
    is_flag=True,
    help="Write files that may carry burned-in text instead of quarantining them.",
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Scrub report folder. [default: OUT-report beside OUT]",
)
@click.option(
    "--no-score",
    is_flag=True,
    help="Write the report without scoring the input and the safe copy (no re-identifier).",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="Re-identifier that scores both copies. [default: the shipped mami-demo]",
)
@quiet_option
@library_errors_to_click
def scrub(
    release: Path,
    out: Path,
    profile_options: tuple[str, ...],
    safe_private: tuple[tuple[str, int, int], ...],
    no_pixels: bool,
    adversaries: tuple[str, ...],
    strength: str,
    epsilon: float | None,
    steps: int | None,
    pixel_settings: tuple[str, ...],
    device: str,
    key_file: Path | None,
    resume: bool,
    overwrite: bool,
    dry_run: bool,
    write_map: bool,
    workers: int,
    allow_burned_in: bool,
    report_dir: Path | None,
    no_score: bool,
    checkpoint: Path | None,
    quiet: bool,
) -> None:
    """De-identify RELEASE into a safe copy in OUT.

    DICOM: PS3.15 Basic Application Level Confidentiality Profile plus the chosen options,
    keyed pseudonyms for Patient ID and Name, keyed UID remapping and date shifts. PNG, JPEG,
    TIFF, NIfTI: metadata stripped. Pixels (unless --no-pixels): bounded gradient steps that push
    the re-identifier's embedding away from the patient while a frozen foundation model and SSIM
    keep the image; written in the original format and bit depth. Output names are keyed
    pseudonyms. Files that may carry burned-in text are quarantined; OUT/manifest.json lists
    every file. The report (OUT-report/report.html) puts the score of the safe copy beside the
    score of RELEASE.
    """
    from deid.scrub import scrub_release

    options = ProfileOptions.from_names(profile_options, safe_private)
    if not dry_run:  # refuse a report folder inside the release or copy before any work
        from deid.scrub.folders import check_locations, check_output
        from deid.scrub.report import check_report_dir, default_scrub_report_dir

        check_locations(release, out)  # first the clearer message about --out itself
        check_output(out, resume=resume, overwrite=overwrite)
        check_report_dir(report_dir or default_scrub_report_dir(out), release, out)
    pixel_cleaner = None
    if not (no_pixels or dry_run):
        pixel_cleaner = pixel_cleaner_from_options(
            adversaries, strength, epsilon, steps, device, release, pixel_settings
        )
    summary = scrub_release(
        release,
        out,
        options=options,
        key_file=key_file,
        resume=resume,
        overwrite=overwrite,
        dry_run=dry_run,
        write_pseudonym_map=write_map,
        workers=workers,
        allow_burned_in=allow_burned_in,
        pixel_cleaner=pixel_cleaner,
        progress=not quiet,
    )
    if summary.key_created:
        click.echo(
            f"created a new secret key at {summary.key_file}: keep it secret (whoever holds it "
            "can re-link pseudonyms); keep it to resume this scrub or to scrub more files of "
            "this release consistently",
            err=True,
        )
    if summary.plan is not None:
        if not quiet:
            from deid.scrub.plan import plan_lines

            click.echo("\n".join(plan_lines(summary.plan)))
            click.echo(f"dry run: plan written to {summary.plan} (owner-only); no image written")
        return
    if not quiet:
        counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items()) or "no files"
        resumed = f" ({summary.already_done} done earlier)" if summary.already_done else ""
        click.echo(
            f"scrubbed {len(summary.entries)} files{resumed}: {counts}; "
            f"{summary.files_per_second:.1f} files/s; manifest: {summary.manifest}"
        )
        for problem in summary.problems[:_PROBLEMS_SHOWN]:
            click.echo(f"  {problem.status}: {problem.input}: {problem.reason}")
        if len(summary.problems) > _PROBLEMS_SHOWN:
            click.echo(f"  ... and {len(summary.problems) - _PROBLEMS_SHOWN} more in the manifest")
        if summary.map is not None:
            click.echo(f"pseudonym map: {summary.map} (owner-only; it re-identifies the copy)")
    _write_report(summary, release, report_dir, no_score, checkpoint, workers, quiet)


def _write_report(
    summary: ScrubSummary,
    release: Path,
    report_dir: Path | None,
    no_score: bool,
    checkpoint: Path | None,
    workers: int,
    quiet: bool,
) -> None:
    """Score the input and the safe copy and write the scrub report beside the copy."""
    from deid.cli.score import progress_bar, step_logger
    from deid.score import ScoreOptions
    from deid.scrub.report import report_scrub

    paths = report_scrub(
        summary,
        release,
        command=_command_line(click.get_current_context()),
        report_dir=report_dir,
        score=not no_score,
        options=ScoreOptions(checkpoint=checkpoint, workers=workers if workers > 1 else 0),
        progress=progress_bar(quiet),
        log=step_logger(quiet),
    )
    if not quiet:
        click.echo(f"report: {paths.html}")


def _command_line(ctx: click.Context) -> str:
    """This run's command line, with the options that were given (defaults left out)."""
    import shlex

    words = ["deid", "scrub", str(ctx.params["release"])]
    for param in ctx.command.params:
        name = param.name or ""
        given = ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        if not isinstance(param, click.Option) or not given:
            continue
        value, flag = ctx.params[name], param.opts[0]
        if param.is_flag:
            words += [flag] if value else []
        elif param.multiple:
            for item in value:
                text = f"{item[0]}:{item[1]:04X}:{item[2]:02X}" if isinstance(item, tuple) else item
                words += [flag, str(text)]
        elif value is not None:
            words += [flag, str(value)]
    return shlex.join(words)
