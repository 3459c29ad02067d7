"""Write a phantom release: image files with PHI, and the answer key ``<OUT>.truth.csv`` beside
the release folder (never inside it, so the release can be scored without leaking the key)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from deid.errors import InputError, OutputError
from deid.io.atomic import atomic_write_bytes, atomic_write_text
from deid.synth.dicom import dicom_files
from deid.synth.layout import ReleaseFile, truth_path
from deid.synth.phi import phi_for
from deid.synth.png import png_files
from deid.synth.uids import uids_for
from reid_model.phantoms.types import DATASETS, PhantomImage

FORMATS: tuple[str, ...] = ("dicom", "png", "both")
TRUTH_COLUMNS: tuple[str, ...] = ("file", "patient", "dataset", "visit", "split", "slice")


@dataclass(frozen=True)
class ReleaseSummary:
    """What :func:`write_release` wrote."""

    out: Path
    truth: Path
    n_images: int  # phantom images (a volume counts once)
    n_files: int
    n_patients: int
    images_per_dataset: dict[str, int]
    seconds: float


def check_output_folder(out: Path, overwrite: bool) -> Path:
    """Refuse a non-empty ``out`` or an existing truth CSV unless ``overwrite``; return the CSV path.

    Raises
    ------
    OutputError
        If ``out`` is a file, or holds data (or its truth CSV exists) and ``overwrite`` is False.
    """
    truth = truth_path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file; choose a folder path for the release")
    if overwrite:
        return truth
    if out.is_dir() and any(out.iterdir()):
        raise OutputError(
            f"{out} is not empty; choose an empty folder or pass --overwrite to write into it"
        )
    if truth.exists():
        raise OutputError(
            f"{truth} already exists; choose another release folder or pass --overwrite"
        )
    return truth


def files_for(image: PhantomImage, fmt: str, seed: int) -> list[ReleaseFile]:
    """Return every file of ``image`` in format ``fmt``; with ``both``, under dicom/ and png/."""
    phi = phi_for(image, seed)
    files: list[ReleaseFile] = []
    if fmt in ("dicom", "both"):
        dicom = dicom_files(image, phi, uids_for(image, seed))
        files += _under("dicom", dicom) if fmt == "both" else dicom
    if fmt in ("png", "both"):
        png = png_files(image, phi)
        files += _under("png", png) if fmt == "both" else png
    return files


def _under(folder: str, files: list[ReleaseFile]) -> list[ReleaseFile]:
    return [ReleaseFile(PurePosixPath(folder) / f.path, f.data, f.slice) for f in files]


def write_release(
    out: Path,
    images: Iterable[PhantomImage],
    fmt: str,
    seed: int,
    progress: bool,
    *,
    overwrite: bool = False,
) -> ReleaseSummary:
    """Write ``images`` as a release with fake PHI into ``out`` and the truth CSV beside it.

    Parameters
    ----------
    out
        Release folder; must be empty or absent unless ``overwrite``.
    images
        Phantom images, e.g. from ``reid_model.phantoms.generator.generate``; consumed once.
    fmt
        ``"dicom"``, ``"png"`` or ``"both"`` (``dicom/`` and ``png/`` sub-folders).
    seed
        Seed of the fake PHI and UIDs; same seed and images give byte-identical files.
    progress
        Show a progress bar with images per second.
    overwrite
        Write into a non-empty folder, replacing files of the same name (others are kept).

    Returns
    -------
    ReleaseSummary

    Raises
    ------
    InputError
        If ``fmt`` is unknown or ``images`` is empty.
    OutputError
        If ``out`` is not usable (see :func:`check_output_folder`) or two images map to the same
        file name.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown release format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    truth = check_output_folder(out, overwrite)
    started = time.perf_counter()
    rows: list[dict[str, object]] = []
    findings: dict[str, list[str]] = {}
    written: set[PurePosixPath] = set()
    per_dataset: dict[str, int] = {}
    patients: set[str] = set()
    for image in tqdm(images, desc="synth", unit="img", disable=not progress):
        for name in image.findings:
            if name not in findings.setdefault(image.dataset, []):
                findings[image.dataset].append(name)
        for file in files_for(image, fmt, seed):
            if file.path in written:
                raise OutputError(
                    f"two images map to {file.path} ({image.patient} visit {image.visit}); "
                    "give the visits distinct days_since_first_visit"
                )
            written.add(file.path)
            atomic_write_bytes(out / file.path, file.data)
            rows.append(_truth_row(image, file))
        per_dataset[image.dataset] = per_dataset.get(image.dataset, 0) + 1
        patients.add(image.patient)
    if not rows:
        raise InputError("no phantom images to write; check the dataset and split selection")
    atomic_write_text(truth, truth_csv(rows, _finding_columns(findings)))
    return ReleaseSummary(
        out=out,
        truth=truth,
        n_images=sum(per_dataset.values()),
        n_files=len(rows),
        n_patients=len(patients),
        images_per_dataset=per_dataset,
        seconds=time.perf_counter() - started,
    )


def _truth_row(image: PhantomImage, file: ReleaseFile) -> dict[str, object]:
    row: dict[str, object] = {
        "file": file.path.as_posix(),
        "patient": image.patient,
        "dataset": image.dataset,
        "visit": image.visit,
        "split": image.split,
        "slice": "" if file.slice is None else file.slice,
    }
    row.update({name: int(bool(value)) for name, value in image.findings.items()})
    return row


def _finding_columns(findings: dict[str, list[str]]) -> list[str]:
    """Finding names grouped by dataset in DATASETS order, each once."""
    order = [d for d in DATASETS if d in findings] + [d for d in findings if d not in DATASETS]
    columns: list[str] = []
    for dataset in order:
        columns += [name for name in findings[dataset] if name not in columns]
    return columns


def truth_csv(rows: list[dict[str, object]], finding_columns: list[str]) -> str:
    """Render truth rows as CSV; a finding that does not apply to a row's dataset stays empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=[*TRUTH_COLUMNS, *finding_columns], restval="", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
