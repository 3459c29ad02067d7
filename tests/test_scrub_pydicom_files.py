"""pydicom's bundled test files (odd encodings, compressed, big endian, deflated, malformed)
go through a scrub: each is written with its Pixel Data intact, or skipped with a known reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest

from deid.scrub import scrub_release

FILES = Path(pydicom.__file__).parent / "data" / "test_files"
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
KNOWN_SKIPS = (
    "without pixel data",
    "not a recognised image format",
    "malformed DICOM header",
    "no SOPClassUID",
    "no SOPInstanceUID",
)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bundled_files_written_intact_or_skipped_with_reason(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    sources = [p for p in sorted(FILES.glob("*.dcm")) if p.stat().st_size < 600_000]
    assert len(sources) > 50
    for path in sources:
        shutil.copy(path, release / path.name)
    summary = scrub_release(
        release, tmp_path / "safe", allow_burned_in=True, write_pseudonym_map=True
    )
    assert sum(summary.counts.values()) == len(sources)
    assert summary.counts["written"] > 50
    for problem in summary.problems:
        assert problem.reason.startswith(KNOWN_SKIPS) or any(
            k in problem.reason for k in KNOWN_SKIPS
        ), problem
    assert summary.map is not None
    for relative, entry in json.loads(summary.map.read_text())["files"].items():
        if entry["status"] != "written":
            continue
        before = pydicom.dcmread(release / relative)
        after = pydicom.dcmread(tmp_path / "safe" / entry["output"])
        assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
        assert after.PatientIdentityRemoved == "YES"
        for keyword in PIXEL_KEYWORDS:
            if keyword in before:
                assert after[keyword].value == before[keyword].value, (relative, keyword)
