"""Journal and manifest: torn lines after a kill, settings checks, public reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deid.errors import OutputError
from deid.scrub.manifest import (
    JOURNAL_NAME,
    FileEntry,
    Journal,
    RunHeader,
    read_previous,
    write_manifest,
)
from deid.scrub.safe_copy import public_reason

HEADER = RunHeader("KEYPRINT", ("retain_uids",), ("113100", "113110"), "", False)


def _entry(name: str) -> FileEntry:
    return FileEntry(
        name,
        "ab" * 32,
        "written",
        kind="dicom",
        output=f"P/{name}.dcm",
        output_sha256="cd" * 32,
        actions={"X": 3, "D": 2},
        pixels="unchanged",
    )


def test_torn_journal_line_is_ignored_and_appending_continues(tmp_path: Path) -> None:
    journal = Journal(tmp_path, HEADER)
    journal.append([_entry("A"), _entry("B")])
    journal.close()
    path = tmp_path / JOURNAL_NAME
    path.write_bytes(path.read_bytes() + b'{"entry": {"input_id": "C", "inp')  # killed here
    header, entries = read_previous(tmp_path)
    assert header == HEADER and sorted(entries) == ["A", "B"]
    resumed = Journal(tmp_path, HEADER)
    resumed.append([_entry("C")])
    resumed.close()
    header, entries = read_previous(tmp_path)
    assert sorted(entries) == ["A", "B", "C"] and entries["C"] == _entry("C")
    assert path.read_text().count('"header"') == 1


def test_manifest_round_trip_sorted_with_counts(tmp_path: Path) -> None:
    entries = [_entry("Z"), FileEntry("M", "", "skipped", "not a recognised image format")]
    write_manifest(tmp_path, HEADER, entries)
    document = json.loads((tmp_path / "manifest.json").read_text())
    assert [f["input_id"] for f in document["files"]] == ["M", "Z"]
    assert document["counts"] == {"skipped": 1, "written": 1}
    header, previous = read_previous(tmp_path)
    assert header == HEADER and previous["Z"] == _entry("Z")


def test_settings_must_match_to_resume(tmp_path: Path) -> None:
    HEADER.check_same(RunHeader.from_dict(HEADER.to_dict()), tmp_path)
    other = RunHeader("OTHER", (), ("113100",), "", True)
    with pytest.raises(OutputError, match="allow_burned_in, codes, key_fingerprint, options"):
        HEADER.check_same(other, tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(OutputError, match="not a scrub manifest"):
        read_previous(tmp_path)


def test_public_reason_drops_details_read_from_the_file() -> None:
    assert public_reason("malformed DICOM header (ValueError: 'DOE^JOHN' bad)") == (
        "malformed DICOM header"
    )
    assert public_reason("empty file (0 bytes)") == "empty file"
    assert public_reason("PNG could not be decoded: John Doe") == "PNG could not be decoded"
    assert public_reason("") == "could not be read"
