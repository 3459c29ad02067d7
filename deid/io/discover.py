"""Find the images of a release by content, group DICOM series, and decode them lazily."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from deid.errors import InputError, UnreadableFileError
from deid.io.dicom_read import (
    PIXEL_KEYWORDS,
    has_pixels,
    load_dicom,
    missing_pixels_reason,
    read_dataset,
)
from deid.io.image_read import load_image
from deid.io.nifti_io import load_nifti
from deid.io.record import Kind, Record, ReleaseItem, Skipped
from deid.io.series import SliceInfo, group_slices
from deid.io.sniff import sniff

__all__ = ["Discovery", "discover", "iter_records", "load", "sniff"]

# What discovery reads from a DICOM header: series grouping, and the SOP class of files
# without pixels (the rest is skipped unparsed, which makes discovery several times faster).
HEADER_KEYWORDS = (
    "SOPClassUID",
    "Modality",
    "SeriesInstanceUID",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "NumberOfFrames",
    *PIXEL_KEYWORDS,
)
NOT_AN_IMAGE = "not a recognised image format (DICOM, PNG, JPEG, TIFF or NIfTI), by content"


@dataclass
class Discovery:
    """Result of ``discover``: lazy items in a deterministic order, and files left out."""

    items: list[ReleaseItem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _walk(root: Path) -> Iterator[Path]:
    """Regular files under ``root`` in sorted order; directory symlinks are not followed."""
    for folder, dirs, files in os.walk(root, onerror=None):
        dirs.sort()
        for name in sorted(files):
            yield Path(folder) / name


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path != root else path.name


def _oserror_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied; grant read access"
    return f"cannot be read ({exc.strerror or exc})"


def _nifti_pair_images(files: list[tuple[Path, Kind | None]]) -> set[Path]:
    """``.img`` halves of ``.hdr``/``.img`` NIfTI pairs: read through their ``.hdr``."""
    return {
        path.with_suffix(".img")
        for path, kind in files
        if kind == "nifti" and path.suffix == ".hdr"
    }


def _dicom_header(path: Path) -> SliceInfo | Skipped:
    """What series grouping needs from one DICOM file, or why the file cannot be used."""
    try:
        ds = read_dataset(path, pixels=False, tags=HEADER_KEYWORDS)
        if not has_pixels(ds):
            return Skipped(path, missing_pixels_reason(ds))
        return SliceInfo.from_dataset(path, ds)
    except UnreadableFileError as exc:
        return Skipped(path, exc.reason)
    except Exception as exc:  # pydicom raises many types on malformed values
        return Skipped(path, f"malformed DICOM header ({type(exc).__name__}: {exc})")


def _probe(path: Path) -> tuple[Kind | None, SliceInfo | Skipped | None]:
    """The format of one file by content and, for DICOM, its grouping header; or why the file
    cannot be read (with ``None`` as its kind)."""
    try:
        if path.stat().st_size == 0:
            return None, Skipped(path, "empty file (0 bytes)")
        kind = sniff(path)
    except OSError as exc:
        return None, Skipped(path, _oserror_reason(exc))
    return kind, _dicom_header(path) if kind == "dicom" else None


def discover(
    root: Path,
    *,
    exclude: Callable[[Path], bool] | None = None,
    pool: Executor | None = None,
) -> Discovery:
    """Walk ``root`` (sorted, deterministic), recognise images by content and group series.

    Parameters
    ----------
    root
        A release folder, or a single file.
    exclude
        Called with each file's path; files for which it returns True are ignored silently.
    pool
        Worker processes to recognise files and read DICOM headers in (the result does not
        depend on it).

    Returns
    -------
    Discovery
        ``items`` sorted by key (decode them with ``load``), and ``skipped`` files with reasons:
        empty, unreadable, not an image, DICOM without pixel data, unparsable DICOM header.

    Raises
    ------
    InputError
        If ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root} does not exist; give the folder that holds the release")
    paths = [root] if root.is_file() else list(_walk(root))
    base = root.parent if root.is_file() else root
    found = Discovery()
    paths = [path for path in paths if exclude is None or not exclude(path)]
    if pool is not None and len(paths) > 1:
        chunk = max(1, len(paths) // (8 * (os.cpu_count() or 1)))
        probes = list(pool.map(_probe, paths, chunksize=chunk))
    else:
        probes = [_probe(path) for path in paths]
    files: list[tuple[Path, Kind | None]] = []
    headers: dict[Path, SliceInfo | Skipped] = {}
    for path, (kind, header) in zip(paths, probes, strict=True):
        if isinstance(header, Skipped) and kind is None:  # empty or unreadable
            found.skipped.append(header)
            continue
        files.append((path, kind))
        if header is not None:
            headers[path] = header
    pair_images = _nifti_pair_images(files)
    slices: list[SliceInfo] = []
    for path, kind in files:
        if kind is None:
            if path not in pair_images:
                found.skipped.append(Skipped(path, NOT_AN_IMAGE))
        elif kind == "dicom":
            header = headers[path]
            if isinstance(header, SliceInfo):
                slices.append(header)
            else:
                found.skipped.append(header)
        else:
            found.items.append(ReleaseItem(_relative(path, base), (path,), kind))
    for unit in group_slices(slices):
        key = _relative(unit[0].path, base) + ("#series" if len(unit) > 1 else "")
        found.items.append(ReleaseItem(key, tuple(s.path for s in unit), "dicom"))
    found.items.sort(key=lambda item: item.key)
    return found


def load(item: ReleaseItem) -> Record:
    """Decode one release item into a Record.

    Raises
    ------
    UnreadableFileError
        On any failure to read or decode (the reason says which file and why).
    """
    try:
        if item.kind == "dicom":
            return load_dicom(item.key, item.paths)
        if item.kind == "nifti":
            return load_nifti(item.key, item.paths[0])
        return load_image(item.key, item.paths[0], item.kind)
    except UnreadableFileError:
        raise
    except MemoryError as exc:
        raise UnreadableFileError(str(item.paths[0]), "too large to decode in memory") from exc
    except Exception as exc:  # a decoder bug or odd file must not end a run
        reason = f"unexpected {type(exc).__name__} while decoding: {exc}"
        raise UnreadableFileError(str(item.paths[0]), reason) from exc


def load_or_skip(item: ReleaseItem) -> Record | Skipped:
    """``load``, with failure returned as a Skipped entry instead of raised."""
    try:
        return load(item)
    except UnreadableFileError as exc:
        return Skipped(Path(exc.path), exc.reason)


def iter_records(
    root: Path,
    workers: int = 0,
    progress: bool = False,
    *,
    exclude: Callable[[Path], bool] | None = None,
) -> Iterator[Record | Skipped]:
    """Discover ``root`` and yield its decoded records, skipped entries first.

    Parameters
    ----------
    root
        Release folder or single file.
    workers
        Decode in this many worker processes (0: in this process). Order is preserved and at
        most ``2 * workers`` decoded records wait in memory.
    progress
        Show a tqdm progress bar on stderr.
    exclude
        As for ``discover``.
    """
    found = discover(root, exclude=exclude)
    yield from found.skipped
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(found.items), unit="item", desc="decoding")
    try:
        if workers <= 0:
            for item in found.items:
                yield load_or_skip(item)
                if bar is not None:
                    bar.update(1)
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending: deque[Future[Record | Skipped]] = deque()
            items = iter(found.items)
            for item in items:
                pending.append(pool.submit(load_or_skip, item))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                result = pending.popleft().result()
                next_item = next(items, None)
                if next_item is not None:
                    pending.append(pool.submit(load_or_skip, next_item))
                yield result
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
