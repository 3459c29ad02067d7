"""The scrub manifest: one entry per input file, journaled as the run goes, so a killed run can
be resumed, and written as ``manifest.json`` when the run ends.

Nothing in it identifies a patient: inputs are named by a keyed id (see
:func:`deid.scrub.naming.input_id`), reasons are generic, and no attribute value is recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TextIO

from deid.errors import OutputError
from deid.io.atomic import atomic_write_text

MANIFEST_NAME = "manifest.json"
JOURNAL_NAME = ".manifest-journal.jsonl"
FORMAT_VERSION = 1

Status = Literal["written", "quarantined", "skipped"]


@dataclass(frozen=True)
class FileEntry:
    """What happened to one input file.

    Attributes
    ----------
    input_id
        Keyed id of the input path (the map written by ``--write-map`` resolves it).
    input_sha256
        Hash of the input bytes ("" when the file could not be read).
    status
        ``written``, ``quarantined`` (held back: may carry burned-in text) or ``skipped``.
    reason
        Why it was quarantined or skipped; "" when written.
    kind
        ``dicom``, ``png``, ``jpeg``, ``tiff``, ``nifti`` or ``""`` when not an image.
    output
        Path of the output inside the safe copy, or "".
    output_sha256
        Hash of the output bytes, or "".
    actions
        Count per action class: DICOM profile actions (X, Z, D, U, K, C) or, for plain images,
        ``metadata_removed``.
    pixels
        ``unchanged`` (DICOM Pixel Data, JPEG scans and NIfTI voxels copied byte for byte),
        ``lossless`` (PNG/TIFF decoded and re-encoded to the same values), ``cleaned`` (changed
        by the pixel cleaner) or "" when nothing was written.
    pixel_metrics
        What the pixel cleaner measured for this file's record (similarities, SSIM, PSNR...).
    """

    input_id: str
    input_sha256: str
    status: Status
    reason: str = ""
    kind: str = ""
    output: str = ""
    output_sha256: str = ""
    actions: dict[str, int] = field(default_factory=dict)
    pixels: str = ""
    pixel_metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileEntry:
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        # shallow, unlike dataclasses.asdict (which deep-copies): called once per file, twice
        return {name: getattr(self, name) for name in _ENTRY_FIELDS}


_ENTRY_FIELDS = tuple(f.name for f in fields(FileEntry))


@dataclass(frozen=True)
class RunHeader:
    """Settings a resumed run must share with the run it continues."""

    key_fingerprint: str
    options: tuple[str, ...]
    codes: tuple[str, ...]
    pixel_cleaner: str
    allow_burned_in: bool
    # the cleaner's strength, seed and optimiser settings (its ``describe()``); {} without one
    pixel_settings: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["options"], data["codes"] = list(self.options), list(self.codes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunHeader:
        data = dict(data)
        data["options"], data["codes"] = tuple(data["options"]), tuple(data["codes"])
        data.setdefault("pixel_settings", {})  # manifests written before it was recorded
        return cls(**data)

    def check_same(self, previous: RunHeader, out: Path) -> None:
        """Raise if ``previous`` (from the output folder) differs from this run's settings.

        Raises
        ------
        OutputError
            Naming what differs.
        """
        if previous == self:
            return
        mine, theirs = self.to_dict(), previous.to_dict()
        changed = sorted(name for name in mine if mine[name] != theirs.get(name))
        hint = (
            "pass the same --key-file" if "key_fingerprint" in changed else "use the same options"
        )
        raise OutputError(
            f"{out} was written with other settings ({', '.join(changed)} differ); to resume, "
            f"{hint}; or pass --overwrite to start again"
        )


class Journal:
    """Append-only JSON-lines record of finished files inside the output folder.

    Each line is flushed when written: a killed process loses at most the line being written,
    and a torn last line is ignored when the journal is read back.
    """

    def __init__(self, out: Path, header: RunHeader) -> None:
        self.path = out / JOURNAL_NAME
        existing = self.path.read_bytes() if self.path.exists() else b""
        self._handle: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        if existing and not existing.endswith(b"\n"):
            self._handle.write("\n")  # end a line cut short by a kill; the next starts clean
        if b'"header"' not in existing:
            self._write({"header": header.to_dict()})

    def append(self, entries: list[FileEntry]) -> None:
        for entry in entries:
            self._write({"entry": entry.to_dict()})

    def _write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def read_previous(out: Path) -> tuple[RunHeader | None, dict[str, FileEntry]]:
    """Header and entries of an earlier run in ``out``: its manifest, then its journal."""
    header: RunHeader | None = None
    entries: dict[str, FileEntry] = {}
    manifest = out / MANIFEST_NAME
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            header = RunHeader.from_dict(data["header"])
            for item in data["files"]:
                entry = FileEntry.from_dict(item)
                entries[entry.input_id] = entry
        except (ValueError, KeyError, TypeError) as exc:
            raise OutputError(
                f"{manifest} is not a scrub manifest ({exc}); pass --overwrite to start again"
            ) from exc
    journal = out / JOURNAL_NAME
    if journal.is_file():
        for line in journal.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                if "header" in record:
                    header = RunHeader.from_dict(record["header"])
                else:
                    entry = FileEntry.from_dict(record["entry"])
                    entries[entry.input_id] = entry
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a kill
    return header, entries


def write_manifest(out: Path, header: RunHeader, entries: list[FileEntry]) -> Path:
    """Write ``manifest.json`` atomically: header, counts, and entries sorted by input id."""
    ordered = sorted(entries, key=lambda e: e.input_id)
    counts: dict[str, int] = {}
    for entry in ordered:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    document = {
        "header": header.to_dict(),
        "counts": dict(sorted(counts.items())),
        "files": [entry.to_dict() for entry in ordered],
    }
    path = out / MANIFEST_NAME
    atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path
