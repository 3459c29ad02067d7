"""Scrub one release item (a file, or the slices of a DICOM series) into the safe copy.

Runs in worker processes: everything it needs travels in a picklable :class:`Job`, and it
returns manifest entries instead of touching shared state. Outputs are written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset

from deid.dicom.burned_in import QUARANTINE_KEYWORDS, needs_quarantine
from deid.dicom.options import ProfileOptions
from deid.dicom.profile import deidentify
from deid.errors import UnreadableFileError
from deid.io.atomic import atomic_write_bytes
from deid.io.dicom_read import read_dataset
from deid.io.discover import load
from deid.io.record import Record, ReleaseItem
from deid.io.writers import write_like
from deid.scrub.folders import WORK_FOLDER
from deid.scrub.manifest import FileEntry
from deid.scrub.naming import PLAIN_SUFFIXES, dicom_output_path, input_id, plain_output_path
from deid.scrub.nifti_header import is_gzip, strip_nifti
from deid.scrub.plain_images import metadata_keys, strip_metadata

PixelCleaner = Callable[[Record], np.ndarray]
SAME_SERIES = "another file of its series may carry burned-in text"


@dataclass(frozen=True)
class Job:
    """What every item of a run shares. Must pickle (sent to worker processes).

    Attributes
    ----------
    base
        Folder that input paths are taken relative to (names and ids derive from them).
    out
        The safe copy's folder.
    key
        Secret key of the release.
    options
        Profile options; ``pixels_cleaned`` is set here when ``pixel_cleaner`` is given.
    allow_burned_in
        Write files that may carry burned-in text instead of quarantining them.
    pixel_cleaner
        Returns new pixels for a decoded record (same shape and units); None keeps every
        file's pixels as they are. Must be picklable to run with several workers (a module-level function or an instance
        of a module-level class). Per-record numbers it keeps in a ``metrics`` mapping (see
        :func:`cleaner_metrics`) go into the manifest.
    """

    base: Path
    out: Path
    key: bytes
    options: ProfileOptions
    allow_burned_in: bool = False
    pixel_cleaner: PixelCleaner | None = None

    def __post_init__(self) -> None:
        if self.pixel_cleaner is not None and not self.options.pixels_cleaned:
            object.__setattr__(
                self, "options", dataclasses.replace(self.options, pixels_cleaned=True)
            )

    def relative(self, path: Path) -> str:
        return path.relative_to(self.base).as_posix() if path != self.base else path.name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def public_reason(reason: str) -> str:
    """A reason fit for the published manifest: the generic part before any detail, which may
    quote values read from the file."""
    return reason.split(" (", 1)[0].split(": ", 1)[0].strip() or "could not be read"


def skipped_entries(job: Job, paths: tuple[Path, ...], reason: str, kind: str) -> list[FileEntry]:
    """Entries for files that are not written, with their input hashes where readable."""
    entries = []
    for path in paths:
        try:
            digest = sha256_file(path)
        except OSError:
            digest = ""
        entries.append(
            FileEntry(
                input_id(job.key, job.relative(path)),
                digest,
                "skipped",
                public_reason(reason),
                kind,
            )
        )
    return entries


def scrub_item(item: ReleaseItem, job: Job) -> list[FileEntry]:
    """Scrub one item; never raises for a bad input file (it is recorded as skipped).

    Raises
    ------
    OSError
        When the output cannot be written: the run must stop.
    """
    try:
        if item.kind == "dicom":
            return _scrub_dicom(item, job)
        return _scrub_plain(item, job)
    except UnreadableFileError as exc:
        return skipped_entries(job, item.paths, exc.reason, item.kind)
    except OSError:  # the output cannot be written (disk full, permissions): stop the run
        raise
    except Exception as exc:  # a malformed value must not end the run
        reason = f"unexpected {type(exc).__name__} while scrubbing ({exc})"
        return skipped_entries(job, item.paths, reason, item.kind)


def _scrub_dicom(item: ReleaseItem, job: Job) -> list[FileEntry]:
    # A single file is read once: its bytes give the input hash and the dataset to scrub.
    single = len(item.paths) == 1 and job.pixel_cleaner is None
    data = _read_bytes(item.paths[0]) if single else None
    first = read_dataset(item.paths[0], pixels=True, data=data) if single else None
    headers = (
        [first]
        if first is not None
        else [read_dataset(p, pixels=False, tags=QUARANTINE_KEYWORDS) for p in item.paths]
    )
    reasons = [needs_quarantine(ds) for ds in headers]
    flagged = next((r for r in reasons if r), None)
    if flagged and not job.allow_burned_in:
        return [
            FileEntry(
                input_id(job.key, job.relative(path)),
                hashlib.sha256(data).hexdigest() if data is not None else sha256_file(path),
                "quarantined",
                reason or SAME_SERIES,
                "dicom",
            )
            for path, reason in zip(item.paths, reasons, strict=True)
        ]
    if first is not None and data is not None:
        return [_write_dicom(item.paths[0], first, job, {}, hashlib.sha256(data).hexdigest())]
    sources: dict[Path, Path] = {path: path for path in item.paths}
    metrics: dict[str, float] = {}
    if job.pixel_cleaner is not None:
        sources, metrics = _cleaned_copies(item, job)
    entries = []
    for path in item.paths:
        source = _read_bytes(sources[path])
        ds = read_dataset(sources[path], pixels=True, data=source)
        digest = hashlib.sha256(source).hexdigest() if sources[path] == path else None
        entries.append(_write_dicom(path, ds, job, metrics, digest or sha256_file(path)))
        if sources[path] != path:
            sources[path].unlink()
    return entries


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableFileError(str(path), f"cannot be read ({exc.strerror})") from exc


def _cleaned_copies(item: ReleaseItem, job: Job) -> tuple[dict[Path, Path], dict[str, float]]:
    """Write the cleaner's pixels into scratch copies of the sources; map source → copy, and
    the cleaner's metrics for the record."""
    assert job.pixel_cleaner is not None
    record = load(item)
    pixels = job.pixel_cleaner(record)
    scratch = job.out / WORK_FOLDER
    copies = {p: scratch / (input_id(job.key, job.relative(p)) + ".dcm") for p in record.paths}
    write_like(record, pixels, [copies[p] for p in record.paths])
    return copies, cleaner_metrics(job.pixel_cleaner, record.key)


def cleaner_metrics(cleaner: PixelCleaner, key: str) -> dict[str, float]:
    """Numbers a cleaner recorded for the record ``key`` in its ``metrics`` mapping, if any.

    A cleaner may keep ``metrics: Mapping[str, dataclass | dict]`` by record key; read in the
    process that ran it, so they reach the manifest with worker processes too.
    """
    found = getattr(cleaner, "metrics", None)
    value = found.get(key) if isinstance(found, Mapping) else None
    if value is None:
        return {}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = dataclasses.asdict(value)
    else:
        data = dict(value)
    return {
        name: float(number)
        for name, number in sorted(data.items())
        if isinstance(number, int | float | np.floating | np.integer)
    }


def _write_dicom(
    path: Path, ds: Dataset, job: Job, metrics: dict[str, float], input_sha256: str
) -> FileEntry:
    relative = job.relative(path)
    meta = getattr(ds, "file_meta", None) or {}
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        if not ds.get(keyword) and not meta.get("MediaStorage" + keyword):
            raise UnreadableFileError(
                str(path), f"no {keyword}: not a storable DICOM object, no valid copy can be made"
            )
    study = str(ds.get("StudyInstanceUID", "") or "")
    series = str(ds.get("SeriesInstanceUID", "") or "")
    log = deidentify(ds, job.options, job.key)
    ds.preamble = b"\x00" * 128  # a preamble may hold anything (TIFF headers, text)
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    data = buffer.getvalue()
    patient = str(ds.get("PatientID", "") or "")
    target = dicom_output_path(job.key, patient, study, series, relative)
    atomic_write_bytes(job.out / target, data, durable=False)  # resume re-checks hashes
    return FileEntry(
        input_id=input_id(job.key, relative),
        input_sha256=input_sha256,
        status="written",
        kind="dicom",
        output=target.as_posix(),
        output_sha256=hashlib.sha256(data).hexdigest(),
        actions=log.counts(),
        pixels="cleaned" if job.pixel_cleaner is not None else "unchanged",
        pixel_metrics=metrics,
    )


def _scrub_plain(item: ReleaseItem, job: Job) -> list[FileEntry]:
    """PNG, JPEG, TIFF or single-file NIfTI: metadata stripped, keyed name."""
    path = item.paths[0]
    relative = job.relative(path)
    data = _read_bytes(path)
    cleaned, removed = _strip(data, item.kind, relative)  # also checks the file can be copied
    metrics: dict[str, float] = {}
    if job.pixel_cleaner is not None:
        record = load(item)
        scratch = job.out / WORK_FOLDER / (input_id(job.key, relative) + "." + item.kind)
        write_like(record, job.pixel_cleaner(record), [scratch])
        metrics = cleaner_metrics(job.pixel_cleaner, record.key)
        cleaned = _strip(scratch.read_bytes(), item.kind, relative)[0]
        scratch.unlink()
    suffix = PLAIN_SUFFIXES[item.kind] + (".gz" if is_gzip(cleaned) else "")
    target: PurePosixPath = plain_output_path(job.key, relative, suffix)
    atomic_write_bytes(job.out / target, cleaned, durable=False)
    return [
        FileEntry(
            input_id=input_id(job.key, relative),
            input_sha256=hashlib.sha256(data).hexdigest(),
            status="written",
            kind=item.kind,
            output=target.as_posix(),
            output_sha256=hashlib.sha256(cleaned).hexdigest(),
            actions={"metadata_removed": removed},
            pixels=_pixel_status(item.kind, job),
            pixel_metrics=metrics,
        )
    ]


def _pixel_status(kind: str, job: Job) -> str:
    if job.pixel_cleaner is not None:
        return "cleaned"
    return "lossless" if kind in ("png", "tiff") else "unchanged"  # JPEG, NIfTI: bytes copied


def _strip(data: bytes, kind: str, name: str) -> tuple[bytes, int]:
    """``data`` without its metadata, and how many metadata entries went."""
    if kind == "nifti":
        return strip_nifti(data, name)
    cleaned = strip_metadata(data, kind, name)
    return cleaned, len(set(metadata_keys(data)) - set(metadata_keys(cleaned)))
