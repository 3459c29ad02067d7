"""``score_release``: discovery → embeddings → linkage, accuracy, gallery, metadata → report."""

from __future__ import annotations

import json
import platform
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from deid import __version__
from deid.errors import CheckpointError, InputError, OutputError
from deid.report import ReportPaths, Results, Verdict, decide_verdict, write_report
from deid.report.schema import SCHEMA_VERSION
from deid.score.cache import EmbeddingCache, default_cache_dir, folder_sha256
from deid.score.embed import Progress, embed_units, no_progress

DEFAULT_CHECKPOINT = "mami-demo"


@dataclass(frozen=True)
class ScoreOptions:
    """Options of ``deid score`` (see ``deid score --help`` for each)."""

    truth: Path | None = None
    gallery: Path | None = None
    checkpoint: Path | None = None  # None: the shipped mami-demo checkpoint
    out: Path | None = None  # None: RELEASE-report beside the release
    threshold: float = 0.5
    fail_above: float = 0.05
    device: str = "auto"
    batch_size: int = 32
    workers: int = 0
    thumbnails: bool = False
    cache_dir: Path | None = None  # None: default_cache_dir()
    use_cache: bool = True
    n_boot: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class ScoreOutcome:
    results: Results
    paths: ReportPaths
    verdict: Verdict


def default_report_dir(release: Path) -> Path:
    """``RELEASE-report`` beside the release folder (never inside it)."""
    release = release.resolve()
    return release.parent / f"{release.name}-report"


def shipped_checkpoint(name: str = DEFAULT_CHECKPOINT) -> Path:
    """Folder of a checkpoint shipped under ``reid_model/weights``.

    Raises
    ------
    CheckpointError
        If the package has no such checkpoint.
    """
    folder = Path(str(resources.files("reid_model") / "weights" / name))
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"the shipped checkpoint {name!r} is not installed at {folder}; pass --checkpoint "
            "with a folder written by `deid train`, or reinstall mami-deid"
        )
    return folder


def _check_paths(release: Path, out: Path) -> None:
    if not release.exists():
        raise InputError(f"release folder {release} does not exist; check the path")
    if release.is_dir() and not any(release.iterdir()):
        raise InputError(f"release folder {release} is empty; point to the folder with the images")
    out_r, rel_r = out.resolve(), release.resolve()
    if rel_r.is_dir() and (out_r == rel_r or rel_r in out_r.parents):
        raise OutputError(
            f"the report folder {out} is inside the release {release}; reports must not become "
            "part of a release: choose --out outside it"
        )
    if _holds_scrub_report(out):
        raise OutputError(
            f"{out} holds the scrub report of this copy (its score is in {out / 'safe-score'}); "
            "choose another --out rather than overwrite it"
        )


def _holds_scrub_report(folder: Path) -> bool:
    """True when ``folder`` holds a `deid scrub` report (both default to ``<folder>-report``)."""
    try:
        return json.loads((folder / "report.json").read_text(encoding="utf-8")).get("report") == (
            "scrub"
        )
    except (OSError, ValueError, AttributeError):
        return False


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "--device cuda was asked for but no CUDA GPU is available; use cpu or auto"
        )
    return device


def _load_model(folder: Path, device: str) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Model, preprocessing config, calibrator and the checkpoint description for the report."""
    from reid_model.calibration import Calibrator
    from reid_model.checkpoint import load_checkpoint

    if not folder.is_dir():
        raise CheckpointError(
            f"checkpoint folder {folder} does not exist; pass the folder written by `deid train`"
        )
    model, cfg, meta = load_checkpoint(folder, device=device)
    if not meta.get("calibration"):
        raise CheckpointError(
            f"checkpoint {folder} has no calibration, so similarities cannot become "
            "probabilities; use a checkpoint trained with validation (deid train does this)"
        )
    try:
        calibrator = Calibrator.from_dict(meta["calibration"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {folder} has a malformed calibration ({exc}); retrain it"
        ) from exc
    extra = meta.get("extra") or {}
    described = {
        "name": folder.name,
        "sha256": folder_sha256(folder),
        "preset": extra.get("preset"),
        "trained_on": str(extra.get("trained_on") or extra.get("data") or "not recorded"),
        # rank-1 on the checkpoint's own validation patients, as recorded by `deid train`
        "validation_rank1": (extra.get("val") or {}).get("overall", {}).get("rank1"),
    }
    return model, cfg.preprocess, calibrator, described


def reproduce_command(release: Path, options: ScoreOptions, checkpoint: Path) -> str:
    """The ``deid score`` command line that repeats a run with these options."""
    defaults = ScoreOptions()
    args = ["deid", "score", str(release), "--checkpoint", str(checkpoint)]
    for name in ("truth", "gallery", "out", "threshold", "fail_above", "n_boot", "seed"):
        value = getattr(options, name)
        if value is not None and value != getattr(defaults, name):
            args += [f"--{name.replace('_', '-')}", str(value)]
    if options.thumbnails:
        args.append("--thumbnails")
    return shlex.join(args)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def score_release(
    release: Path,
    options: ScoreOptions,
    *,
    command: str | None = None,
    progress: Progress = no_progress,
    log: Callable[[str], None] | None = None,
    exclude: Callable[[Path], bool] | None = None,
) -> ScoreOutcome:
    """Audit a release for re-identification risk and write its report.

    Parameters
    ----------
    release : Path
        Folder of the release (or one file).
    options : ScoreOptions
        See the class; ``options.out`` defaults to :func:`default_report_dir`.
    command : str, optional
        The command line printed in the report; by default one built from the options.
    progress : Progress
        Wraps long loops in progress bars (see :data:`deid.score.embed.Progress`).
    log : callable, optional
        Receives one line per step.
    exclude : callable, optional
        Files of the release for which it returns True are not scored or audited (e.g. the
        ``manifest.json`` of a scrub output); see :func:`deid.io.discover`.

    Returns
    -------
    ScoreOutcome
        The results dict, the report paths and the verdict.

    Raises
    ------
    InputError
        Missing or empty release, no image in it, bad truth CSV or options.
    CheckpointError
        Missing or corrupt checkpoint, or one without calibration.
    OutputError
        Report folder inside the release, or unwritable.
    """
    from deid.io import discover
    from deid.score.accuracy import truth_metrics
    from deid.score.gallery import gallery_section
    from deid.score.linkage import linkage_section
    from deid.score.metadata import audit_release, mask_path
    from deid.score.thumbnails import thumbnails
    from deid.score.truth import build_units, labels_from_pseudonyms, read_truth

    say = log or (lambda _line: None)
    release = Path(release)
    out = Path(options.out) if options.out is not None else default_report_dir(release)
    _check_paths(release, out)
    if not 0.0 < options.threshold <= 1.0 or not 0.0 <= options.fail_above <= 1.0:
        raise InputError("--threshold must be in (0, 1] and --fail-above in [0, 1]")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    say(f"discovering images in {release}")
    t = time.perf_counter()
    root = release if release.is_dir() else release.parent
    found = discover(release, exclude=exclude)
    truth = read_truth(Path(options.truth)) if options.truth else None
    if not found.items:
        reasons = sorted({s.reason for s in found.skipped})[:3]
        raise InputError(
            f"no readable image in {release} ({len(found.skipped)} files skipped: {reasons}); "
            "give a folder of DICOM, PNG, JPEG, TIFF or NIfTI files"
        )
    units, labels = build_units(found.items, root, truth, found.skipped)
    timings["discover"] = time.perf_counter() - t

    device = _resolve_device(options.device)
    ckpt_dir = Path(options.checkpoint) if options.checkpoint else shipped_checkpoint()
    say(f"loading checkpoint {ckpt_dir}")
    t = time.perf_counter()
    model, pre_cfg, calibrator, ckpt = _load_model(ckpt_dir, device)
    timings["load model"] = time.perf_counter() - t

    cache = (
        EmbeddingCache(options.cache_dir or default_cache_dir(), ckpt["sha256"])
        if options.use_cache
        else None
    )
    say(f"embedding {len(units)} images on {device}")
    embedded = embed_units(
        units,
        model,
        pre_cfg,
        cache=cache,
        device=device,
        batch_size=options.batch_size,
        workers=options.workers,
        progress=progress,
    )
    timings.update({k: v for k, v in embedded.timings_s.items()})
    if len(embedded.units) == 0:
        raise InputError(
            f"none of the {len(units)} images in {release} could be decoded, e.g. "
            f"{embedded.skipped[0][1]}; check the files"
        )
    label_of = dict(zip((u.key for u in units), labels, strict=True))
    read_labels = [label_of[u.key] for u in embedded.units]

    say("auditing metadata")
    t = time.perf_counter()
    audit = audit_release(found.items, found.skipped, root, embedded.units, progress)
    metadata, pseudonyms = audit.metadata, audit.pseudonyms
    timings["metadata"] = time.perf_counter() - t

    say("measuring linkage")
    t = time.perf_counter()
    linkage = linkage_section(
        embedded.embeddings, calibrator, pseudonyms, options.threshold, embedded.modalities
    )
    timings["risk"] = time.perf_counter() - t

    rng = np.random.default_rng(options.seed)
    truth_section = None
    source = f"truth CSV {truth.source.name}" if truth is not None else None
    if truth is None and pseudonyms is not None and len(set(pseudonyms)) < len(pseudonyms):
        # no answer key, but the files name their patients: judge against those names
        read_labels = labels_from_pseudonyms(pseudonyms, audit.study_times, embedded.modalities)
        source = "PatientID of the files"
    if source is not None:
        say(f"measuring accuracy against the {source}")
        t = time.perf_counter()
        try:
            truth_section = truth_metrics(
                embedded.embeddings, read_labels, source=source, n_boot=options.n_boot, rng=rng
            )
        except InputError:
            if truth is not None:
                raise
            # PatientIDs that never repeat within a modality give nothing to measure
        timings["truth metrics"] = time.perf_counter() - t

    gallery = None
    if options.gallery is not None:
        say(f"matching against the gallery {options.gallery}")
        t = time.perf_counter()
        gallery = gallery_section(
            Path(options.gallery),
            embedded,
            read_labels,
            model,
            pre_cfg,
            calibrator,
            threshold=options.threshold,
            cache=cache,
            device=device,
            batch_size=options.batch_size,
            workers=options.workers,
            progress=progress,
        )
        timings["gallery"] = time.perf_counter() - t

    skipped = [
        {"path": mask_path(_relative(Path(s.path), root)), "reason": s.reason}
        for s in found.skipped
    ]
    skipped += [{"path": mask_path(key), "reason": reason} for key, reason in embedded.skipped]
    per_modality: dict[str, int] = {}
    for modality in embedded.modalities:
        per_modality[modality] = per_modality.get(modality, 0) + 1
    opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
    opts.update(
        out=str(out),
        device=device,
        cache_hits=embedded.cache_hits,
        python=platform.python_version(),
    )
    results: Results = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "mami-deid", "version": __version__},
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command or reproduce_command(release, options, ckpt_dir),
        "options": opts,
        "checkpoint": ckpt,
        "scope": {
            "n_files": sum(len(u.paths) for u in units) + len(found.skipped),
            "n_records": len(embedded.units),
            "n_skipped": len(skipped),
            "per_modality": per_modality,
        },
        "linkage": linkage,
        "truth": truth_section,
        "gallery": gallery,
        "metadata": metadata,
        "skipped": skipped,
        "thumbnails": thumbnails(embedded.units, embedded.modalities)
        if options.thumbnails
        else None,
        "timings_s": {},
    }
    timings["total"] = time.perf_counter() - t0
    results["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    say(f"writing the report to {out}")
    try:
        paths = write_report(results, out)
    except OSError as exc:
        raise OutputError(
            f"cannot write the report to {out} ({exc}); choose another --out"
        ) from exc
    return ScoreOutcome(results, paths, decide_verdict(results))
