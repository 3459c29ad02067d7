"""Where a scrub may write, and the private files it keeps beside (never inside) the safe copy.

``SAFE.key`` (the secret key), ``SAFE.map.json`` (original → pseudonym map, on request only) and
``SAFE.plan.json`` (the dry-run plan, which names input files) sit next to the output folder
``SAFE`` with owner-only permissions, so that the folder itself can be released as it is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from deid.errors import InputError, OutputError
from deid.io.atomic import remove_partials
from deid.scrub.manifest import JOURNAL_NAME, MANIFEST_NAME

WORK_FOLDER = ".deid-work"  # per-run scratch inside the output, removed at the end


def sidecar(out: Path, suffix: str) -> Path:
    """``out`` with ``suffix`` appended to its name, in the same parent folder."""
    if not out.name:
        raise InputError(f"{out}: the output must be a named folder, not a filesystem root")
    return out.with_name(out.name + suffix)


def key_path(out: Path) -> Path:
    return sidecar(out, ".key")


def map_path(out: Path) -> Path:
    return sidecar(out, ".map.json")


def plan_path(out: Path) -> Path:
    return sidecar(out, ".plan.json")


def check_locations(release: Path, out: Path) -> tuple[Path, Path]:
    """Resolve both paths and refuse overlapping ones.

    Raises
    ------
    InputError
        If the release is missing, or ``out`` is the release, inside it, or contains it.
    OutputError
        If ``out`` exists and is not a folder.
    """
    if not release.exists():
        raise InputError(f"{release} does not exist; give the folder that holds the release")
    source, target = release.resolve(), out.resolve()
    if target == source or source in target.parents:
        raise InputError(
            f"--out {out} is the release or inside it; write the safe copy to a separate folder "
            "so that inputs are never touched"
        )
    if target in source.parents:
        raise InputError(
            f"the release {release} is inside --out {out}; choose an output folder elsewhere"
        )
    if target.exists() and not target.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder path")
    return source, target


def looks_like_scrub_output(out: Path) -> bool:
    return (out / MANIFEST_NAME).is_file() or (out / JOURNAL_NAME).is_file()


def check_output(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an output folder the flags do not allow writing into (changes nothing).

    Raises
    ------
    InputError
        If both ``resume`` and ``overwrite`` are given.
    OutputError
        If ``out`` is not empty and neither flag allows it, or it holds files that are not a
        scrub output (``overwrite`` never empties a folder deid scrub did not write).
    """
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other; choose one")
    if not (out.is_dir() and any(out.iterdir())):
        return
    if not (resume or overwrite):
        raise OutputError(
            f"--out {out} is not empty; pass --resume to finish an interrupted scrub, "
            "--overwrite to replace it, or choose an empty folder"
        )
    if not looks_like_scrub_output(out):
        raise OutputError(
            f"--out {out} holds files that deid scrub did not write; choose an empty "
            "folder or remove them"
        )


def prepare_output(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Check ``out`` (see :func:`check_output`), then create it, or empty it for
    ``overwrite``; leftovers of an interrupted run (partial files, scratch) are removed."""
    check_output(out, resume=resume, overwrite=overwrite)
    if overwrite and out.is_dir():
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    remove_partials(out)
    shutil.rmtree(out / WORK_FOLDER, ignore_errors=True)
