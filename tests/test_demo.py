"""``deid demo``: synth → score on phantom patients, with the tiny test checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from click.testing import CliRunner
from test_score import make_checkpoint

from deid.cli.demo import demo
from reid_model.phantoms.protocol import split_of

# the fewest phantom patients whose cohort holds exactly one test-split patient (seed 0)
PATIENTS = next(i for i in range(1000) if split_of(i, 0) == "test") + 1


def test_demo_writes_a_release_and_its_report(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # keep the embedding cache here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the default on a CPU
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    result = CliRunner().invoke(
        demo,
        [
            str(tmp_path / "demo"),
            "--patients",
            str(PATIENTS),
            "--visits",
            "2",
            "--checkpoint",
            str(checkpoint),
            "--workers",
            "0",
            "--quiet",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = tmp_path / "demo" / "release-report"
    assert f"report: {report / 'report.html'}" in result.output
    scrubbed = json.loads(
        (tmp_path / "demo" / "release-scrubbed-report" / "report.json").read_text(encoding="utf-8")
    )
    # the safe copy keeps no direct identifier in its headers or paths
    assert scrubbed["metadata"]["direct_identifier_files"] == 0
    assert "safe copy: " in result.output
    results = json.loads((report / "report.json").read_text(encoding="utf-8"))
    # one test-split patient x 2 visits in each of the 5 datasets
    assert results["scope"]["n_records"] == 10
    assert len(results["scope"]["per_modality"]) == 5
    assert results["truth"]["groups"]["all"]["n_patients"] == 5
    # one patient per dataset: no different-patient pair, so per-dataset accuracy is not measured
    assert set(results["truth"]["not_measured"]) == {
        "brain_mri",
        "chest_ct",
        "cxr_site_a",
        "cxr_site_b",
        "fundus",
    }
    assert results["metadata"]["direct_identifier_files"] > 0  # synth writes fake PHI
    assert any((tmp_path / "cache").rglob("*.npz"))
    manifest = json.loads((tmp_path / "demo" / "release-scrubbed" / "manifest.json").read_text())
    assert {e["pixels"] for e in manifest["files"]} == {"unchanged"}  # no GPU: metadata only
    assert "--no-pixels" in (tmp_path / "demo" / "scrub-report" / "report.html").read_text()


def test_demo_with_pixels_perturbs_every_image(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    args = [str(tmp_path / "demo"), "--patients", str(PATIENTS), "--visits", "2"]
    args += ["--checkpoint", str(checkpoint), "--pixels", "--strength", "low", "--quiet"]
    result = CliRunner().invoke(demo, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "demo" / "release-scrubbed" / "manifest.json").read_text())
    written = [e for e in manifest["files"] if e["status"] == "written"]
    assert written and {e["pixels"] for e in written} == {"cleaned"}
    assert all(0.0 < e["pixel_metrics"]["ssim"] <= 1.0 for e in written)
    assert manifest["header"]["pixel_settings"]["strength"] == "low"
    report = json.loads((tmp_path / "demo" / "scrub-report" / "report.json").read_text())
    assert "113101" in report["run"]["cid7050_codes"]  # Clean Pixel Data


def test_demo_refuses_to_overwrite_an_earlier_run(tmp_path: Path) -> None:
    (tmp_path / "demo" / "release").mkdir(parents=True)
    (tmp_path / "demo" / "release" / "old.dcm").write_bytes(b"x")
    result = CliRunner().invoke(demo, [str(tmp_path / "demo"), "--quiet"])
    assert result.exit_code != 0 and "--overwrite" in result.output
