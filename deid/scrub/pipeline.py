"""``scrub_release``: the safe, resumable, de-identified copy of a release.

Order of a run: check locations → key → (dry run: plan and stop) → prepare the output folder
→ discover → skip what an earlier run finished → scrub the rest (serial or in worker
processes), journaling each finished item → ``manifest.json`` → optional pseudonym map.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from deid.dicom.keys import load_key, load_or_create_key
from deid.dicom.options import ProfileOptions
from deid.io.discover import Discovery, discover
from deid.io.record import ReleaseItem
from deid.io.sniff import sniff
from deid.scrub.folders import (
    WORK_FOLDER,
    check_locations,
    check_output,
    key_path,
    looks_like_scrub_output,
    prepare_output,
)
from deid.scrub.manifest import FileEntry, Journal, RunHeader, read_previous, write_manifest
from deid.scrub.mapping import write_map
from deid.scrub.naming import input_id, key_fingerprint
from deid.scrub.plan import write_plan
from deid.scrub.safe_copy import Job, PixelCleaner, scrub_item, sha256_file, skipped_entries


@dataclass(frozen=True)
class Problem:
    """A file that was not written, for the operator's console (names the input file)."""

    input: str
    status: str
    reason: str


@dataclass(frozen=True)
class ScrubSummary:
    """What :func:`scrub_release` did.

    Attributes
    ----------
    out
        The safe copy's folder.
    key_file
        Where the key is; ``key_created`` tells whether this run created it.
    manifest
        ``out/manifest.json``, or None after a dry run.
    entries
        One manifest entry per input file, sorted by input id.
    problems
        Quarantined and skipped files, named by their input path (operator-side only).
    already_done
        Files an earlier, interrupted run had finished (``resume``).
    seconds
        Wall time of the scrub phase.
    plan, map
        The dry-run plan and the pseudonym map beside ``out``, when written.
    counts
        Files per status (written, quarantined, skipped).
    header
        Settings of the run (options, CID 7050 codes, key fingerprint), as in the manifest.
    """

    out: Path
    key_file: Path
    key_created: bool
    manifest: Path | None
    entries: tuple[FileEntry, ...] = ()
    problems: tuple[Problem, ...] = ()
    already_done: int = 0
    seconds: float = 0.0
    plan: Path | None = None
    map: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)
    header: RunHeader | None = None

    @property
    def files_per_second(self) -> float:
        scrubbed = len(self.entries) - self.already_done
        return scrubbed / self.seconds if self.seconds > 0 else 0.0


def scrub_release(
    release: Path,
    out: Path,
    *,
    options: ProfileOptions | None = None,
    key_file: Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    write_pseudonym_map: bool = False,
    workers: int = 1,
    allow_burned_in: bool = False,
    pixel_cleaner: PixelCleaner | None = None,
    progress: bool = False,
) -> ScrubSummary:
    """Write a de-identified copy of ``release`` into ``out``.

    DICOM files get the PS3.15 Basic Profile (plus ``options``) with keyed pseudonyms, UIDs and
    date shifts, and are written under pseudonymous folders; Pixel Data is bit-identical unless
    ``pixel_cleaner`` is given. PNG/JPEG/TIFF/NIfTI lose their metadata (pixels kept exactly) and
    get keyed names. Files that may carry burned-in text are quarantined, unreadable or
    unsupported files skipped; both are listed in ``out/manifest.json``. Inputs are never
    modified; every output is written atomically; a killed run is finished with ``resume``.

    Parameters
    ----------
    release
        Release folder (or a single file).
    out
        Output folder; may not be the release, inside it, or contain it.
    options
        PS3.15 profile options (default: Basic Profile only).
    key_file
        Secret key to use; default ``<out>.key`` beside the output, created (mode 0o600) if
        missing. Same input + same key gives byte-identical output.
    resume, overwrite
        What to do with a non-empty ``out``: continue the run recorded there (same key and
        options required), or replace it. Without either a non-empty ``out`` is refused.
    dry_run
        Write the per-attribute plan to ``<out>.plan.json`` (owner-only; it names inputs) and
        no images.
    write_pseudonym_map
        Also write ``<out>.map.json`` (original → pseudonym, owner-only).
    workers
        Parallel worker processes (1: in this process). Output does not depend on it.
    allow_burned_in
        Write files that may carry burned-in text instead of quarantining them.
    pixel_cleaner
        Called with each decoded record, returns its new pixels; None keeps pixels unchanged.
        Must be picklable when ``workers > 1``.
    progress
        Show a progress bar with files/s on stderr.

    Returns
    -------
    ScrubSummary

    Raises
    ------
    InputError
        Bad locations or option combinations, or an unusable key file.
    OutputError
        ``out`` not usable, or written with other settings (on resume).
    """
    options = options or ProfileOptions()
    source, target = check_locations(Path(release), Path(out))
    if not dry_run:  # before a key is created beside a folder that cannot be used
        check_output(target, resume=resume, overwrite=overwrite)
    keyfile = Path(key_file) if key_file is not None else key_path(Path(out))
    created = key_file is None and not keyfile.exists()
    key = load_key(keyfile) if key_file is not None else load_or_create_key(keyfile)
    base = source.parent if source.is_file() else source
    job = Job(base, target, key, options, allow_burned_in, pixel_cleaner)
    if dry_run:
        plan = write_plan(Path(out), job, discover(source, exclude=_inside(target)))
        return ScrubSummary(Path(out), keyfile, created, None, plan=plan)
    header = RunHeader(
        key_fingerprint=key_fingerprint(key),
        options=tuple(job.options.enabled()),
        codes=tuple(code for code, _ in job.options.cid7050_codes()),
        pixel_cleaner=_cleaner_name(pixel_cleaner),
        pixel_settings=_cleaner_settings(pixel_cleaner),
        allow_burned_in=allow_burned_in,
    )
    previous: dict[str, FileEntry] = {}
    if resume and looks_like_scrub_output(target):
        earlier, previous = read_previous(target)
        if earlier is not None:
            header.check_same(earlier, Path(out))
    prepare_output(target, resume=resume, overwrite=overwrite)
    # One pool for the whole run: the job (key, options, possibly a model-holding pixel
    # cleaner) is sent once per worker, not once per item.
    pool = (
        ProcessPoolExecutor(max_workers=workers, initializer=_set_worker_job, initargs=(job,))
        if workers > 1
        else None
    )
    journal: Journal | None = None
    try:
        found = discover(source, exclude=_inside(target), pool=pool)
        started = time.perf_counter()
        entries, pending = _finished(found.items, job, previous)
        already = len(entries)
        journal = Journal(target, header)
        for skipped in found.skipped:
            kind = _kind(skipped.path)
            entries += skipped_entries(job, (skipped.path,), skipped.reason, kind)
        total = sum(len(item.paths) for item in found.items)
        with tqdm(
            total=total, initial=already, unit="file", desc="scrub", disable=not progress
        ) as bar:
            for result in _run(pending, job, pool, workers):
                journal.append(result)
                entries += result
                bar.update(len(result))
    finally:
        if journal is not None:
            journal.close()
        if pool is not None:  # on an error or interrupt, do not wait for queued items to run
            pool.shutdown(wait=True, cancel_futures=True)
    seconds = time.perf_counter() - started
    _remove_stale(target, previous, entries)
    manifest = write_manifest(target, header, entries)
    journal.remove()
    shutil.rmtree(target / WORK_FOLDER, ignore_errors=True)
    names = _input_names(found, job)
    problems = tuple(
        Problem(names.get(e.input_id, e.input_id), e.status, e.reason)
        for e in sorted(entries, key=lambda e: names.get(e.input_id, ""))
        if e.status != "written"
    )
    mapping = write_map(Path(out), job, entries, names) if write_pseudonym_map else None
    counts = Counter(entry.status for entry in entries)
    return ScrubSummary(
        out=Path(out),
        key_file=keyfile,
        key_created=created,
        manifest=manifest,
        entries=tuple(sorted(entries, key=lambda e: e.input_id)),
        problems=problems,
        already_done=already,
        seconds=seconds,
        map=mapping,
        counts=dict(sorted(counts.items())),
        header=header,
    )


def _remove_stale(out: Path, previous: dict[str, FileEntry], entries: list[FileEntry]) -> None:
    """Delete outputs an earlier run wrote for inputs that are no longer in the release, so
    the safe copy holds exactly what its manifest lists."""
    current = {entry.input_id for entry in entries}
    for input_key, entry in previous.items():
        if input_key not in current and entry.output:
            stale = out / entry.output
            stale.unlink(missing_ok=True)
            for folder in stale.parents:  # and the pseudonymous folders it leaves empty
                if folder == out or any(folder.iterdir()):
                    break
                folder.rmdir()


def _input_names(found: Discovery, job: Job) -> dict[str, str]:
    """Input id -> input path inside the release, for operator-side messages and the map."""
    paths = [p for item in found.items for p in item.paths] + [s.path for s in found.skipped]
    return {input_id(job.key, job.relative(p)): job.relative(p) for p in paths}


def _inside(folder: Path) -> Callable[[Path], bool]:
    """Discovery filter that leaves out anything under ``folder`` (belt and braces: the
    locations check already keeps the output outside the release)."""
    return lambda path: folder in path.resolve().parents


def _kind(path: Path) -> str:
    try:
        return sniff(path) or ""
    except OSError:
        return ""


def _cleaner_name(cleaner: PixelCleaner | None) -> str:
    """Module and name of the cleaner (function or callable object), recorded for resume."""
    if cleaner is None:
        return ""
    owner = cleaner if hasattr(cleaner, "__qualname__") else type(cleaner)
    return f"{owner.__module__}.{owner.__qualname__}"


def _cleaner_settings(cleaner: PixelCleaner | None) -> dict[str, Any]:
    """The cleaner's own description of its settings (``describe()``), if it has one."""
    describe = getattr(cleaner, "describe", None)
    return dict(describe()) if callable(describe) else {}


def _finished(
    items: list[ReleaseItem], job: Job, previous: dict[str, FileEntry]
) -> tuple[list[FileEntry], list[ReleaseItem]]:
    """Split items into entries an earlier run finished (outputs intact) and items to do."""
    done: list[FileEntry] = []
    pending: list[ReleaseItem] = []
    for item in items:
        earlier = [previous.get(input_id(job.key, job.relative(p))) for p in item.paths]
        if all(e is not None and _intact(e, job.out) for e in earlier):
            done += [e for e in earlier if e is not None]
        else:
            pending.append(item)
    return done, pending


def _intact(entry: FileEntry, out: Path) -> bool:
    """Whether an earlier entry can stand: skipped files are tried again (they may have been
    fixed), written ones only count when their output is still there unchanged."""
    if entry.status != "written":
        return entry.status == "quarantined"
    target = out / entry.output
    return target.is_file() and sha256_file(target) == entry.output_sha256


_WORKER_JOB: Job | None = None


def _set_worker_job(job: Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job


def _scrub_in_worker(items: list[ReleaseItem]) -> list[list[FileEntry]]:
    assert _WORKER_JOB is not None, "worker started without its job"
    return [scrub_item(item, _WORKER_JOB) for item in items]


def _run(
    items: list[ReleaseItem], job: Job, pool: ProcessPoolExecutor | None, workers: int
) -> Iterator[list[FileEntry]]:
    """Scrub ``items``, yielding each item's entries as it finishes (any order with a pool)."""
    if pool is None:
        for item in items:
            yield scrub_item(item, job)
        return
    # Small batches: one round trip per batch instead of per file, while every worker still
    # gets several batches (an even finish) and the journal keeps up with the work done.
    size = max(1, min(16, len(items) // (4 * workers)))
    batches = [items[i : i + size] for i in range(0, len(items), size)]
    futures = [pool.submit(_scrub_in_worker, batch) for batch in batches]
    for future in as_completed(futures):
        yield from future.result()
