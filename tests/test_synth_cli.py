from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pydicom
from click.testing import CliRunner

from deid.cli import main


def _truth(out: Path) -> list[dict[str, str]]:
    with open(out.with_name(out.name + ".truth.csv"), newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_synth_writes_a_tiny_release_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "release"
    args = ["synth", str(out), "--patients", "2", "--visits", "2", "--format", "both"]
    args += ["--datasets", "cxr_site_a", "--datasets", "fundus", "--seed", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "wrote 16 files (8 images, 4 patients)" in result.output
    rows = _truth(out)
    assert len(rows) == 16
    assert {r["dataset"] for r in rows} == {"cxr_site_a", "fundus"}
    assert {(r["patient"], r["visit"]) for r in rows} == {
        (f"{d}-{p:05d}", str(v))
        for d in ("cxr_site_a", "fundus")
        for p in range(2)
        for v in range(2)
    }
    dicom = [out / r["file"] for r in rows if r["file"].startswith("dicom/")]
    for path in dicom:
        ds = pydicom.dcmread(path)
        assert ds.PatientID in path.as_posix()
    if shutil.which("dciodvfy"):
        for path in dicom:
            report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
            assert "Error" not in report.stdout + report.stderr, report.stderr


def test_split_option_keeps_one_split(tmp_path: Path) -> None:
    out = tmp_path / "test_split"
    args = ["synth", str(out), "--patients", "6", "--visits", "1", "--datasets", "cxr_site_b"]
    result = CliRunner().invoke(main, [*args, "--split", "test", "--format", "png", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output == ""
    rows = _truth(out)
    assert rows and {r["split"] for r in rows} == {"test"}
    assert all(r["file"].endswith(".png") for r in rows)


def test_unknown_dataset_is_a_usage_error(tmp_path: Path) -> None:
    args = ["synth", str(tmp_path / "o"), "--patients", "1", "--datasets", "fundus,lungs"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "unknown dataset(s) lungs" in result.output and "cxr_site_a" in result.output
    assert not (tmp_path / "o").exists()


def test_non_empty_output_is_refused_with_a_remedy(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.dcm").write_bytes(b"")
    args = ["synth", str(tmp_path / "busy"), "--patients", "1", "--datasets", "fundus"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "not empty" in result.output and "--overwrite" in result.output
