"""The report layer on a hand-made results dict: sections, escaping, no identifiers, JSON."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deid.errors import InputError
from deid.report import (
    SCHEMA_VERSION,
    ReportPaths,
    decide_verdict,
    histogram,
    render_html,
    write_report,
)
from deid.report.schema import Results

SCRIPT = "<script>alert('x')</script>"


def _group(rng: np.random.Generator, n: int) -> dict:
    cmc = np.sort(rng.uniform(0.5, 1.0, 10)).tolist()
    fpr = [0.0, 1e-4, 1e-3, 1e-2, 0.1, 1.0]
    return {
        "n_images": n,
        "n_patients": n // 3,
        "n_queries": n,
        "rank1": cmc[0],
        "rank5": cmc[4],
        "mAP": 0.6,
        "auc": 0.93,
        "tar_at_far_1e3": 0.4,
        "ci": {"rank1": {"low": cmc[0] - 0.1, "high": min(1.0, cmc[0] + 0.1)}},
        "cmc_ranks": list(range(1, 11)),
        "cmc": cmc,
        "roc_fpr": fpr,
        "roc_tpr": [0.0, 0.2, 0.4, 0.7, 0.9, 1.0],
    }


def sample_results(seed: int = 0) -> Results:
    """A complete results dict with a file-borne ``<script>`` string in several places."""
    rng = np.random.default_rng(seed)
    risk = rng.beta(2, 3, 60).tolist()
    edges = np.linspace(0, 1, 21).tolist()
    sims = np.linspace(-1, 1, 41).tolist()
    per_mod = {
        m: {
            "n_records": 20,
            "n_at_risk": 5,
            "share_at_risk": 0.25,
            "max_risk": 0.9,
            "mean_risk": 0.4,
        }
        for m in ("CR", "CT", SCRIPT)
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "mami-deid", "version": "0.1.0"},
        "created_utc": "2026-01-01T00:00:00Z",
        "command": "deid score release --truth release.truth.csv",
        "options": {
            "threshold": 0.5,
            "fail_above": 0.05,
            "device": "cpu",
            "truth": "release.truth.csv",
        },
        "checkpoint": {
            "name": "test",
            "sha256": "ab" * 32,
            "preset": "test",
            "trained_on": "phantom patients (synthetic)",
        },
        "scope": {
            "n_files": 62,
            "n_records": 60,
            "n_skipped": 2,
            "per_modality": {"CR": 20, "CT": 20, SCRIPT: 20},
        },
        "linkage": {
            "threshold": 0.5,
            "uses_pseudonyms": True,
            "n_records": 60,
            "n_at_risk": 15,
            "share_at_risk": 0.25,
            "max_risk": max(risk),
            "mean_risk": float(np.mean(risk)),
            "estimated_patients": 18,
            "claimed_patients": 20,
            "linked_pseudonym_pairs": 4,
            "per_record_risk": risk,
            "risk_histogram": histogram(risk, edges),
            "per_modality": per_mod,
        },
        "truth": {
            "source": "truth CSV",
            "n_matched": 60,
            "not_measured": {"brain_mri": f"one visit per patient {SCRIPT}"},
            "groups": {
                "all": _group(rng, 60),
                "cxr_site_a": _group(rng, 30),
                SCRIPT: _group(rng, 30),
            },
            "similarity_same": histogram(rng.normal(0.6, 0.1, 100).tolist(), sims),
            "similarity_different": histogram(rng.normal(0.1, 0.2, 400).tolist(), sims),
        },
        "gallery": {
            "n_gallery": 30,
            "with_truth": True,
            "top1_correct_share": 0.7,
            "best_match_probability": histogram(risk, edges),
            "n_above_threshold": 12,
        },
        "metadata": {
            "n_files": 62,
            "n_dicom": 40,
            "action_counts": {"D": 40, "X": 80, "U": 120},
            "attributes_present": {"PatientName": 40, "PatientID": 40, "StudyDate": 40},
            "private_tags_files": 3,
            "burned_in_annotation_files": 1,
            "identity_not_removed_files": 40,
            "path_phi_files": 1,
            "embedded_text_files": 0,
            "direct_identifier_files": 40,
            "per_file": [{"path": f"dx/{SCRIPT}.dcm", "findings": ["PatientName present", SCRIPT]}],
        },
        "skipped": [{"path": f"junk/{SCRIPT}.png", "reason": f"not an image: {SCRIPT}"}],
        "thumbnails": None,
        "timings_s": {"decode": 1.0, "embed": 2.0, "risk": 0.1},
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> ReportPaths:
    """The sample report, rendered once for the tests that only read it."""
    return write_report(sample_results(), tmp_path_factory.mktemp("report"))


def test_histogram_counts_every_value_in_range() -> None:
    hist = histogram([0.0, 0.1, 0.5, 0.99, 1.0, 1.5], [0.0, 0.5, 1.0])
    assert hist["counts"] == [2, 3]  # 1.5 is out of range; 1.0 falls in the closed last bin


def test_report_has_every_section_and_escapes_file_strings(written: ReportPaths) -> None:
    html = written.html.read_text(encoding="utf-8")
    for section in (
        "verdict",
        "scope",
        "pixels",
        "metadata",
        "limitations",
        "regulatory",
        "skipped",
        "reproduce",
    ):
        assert f'id="{section}"' in html
    for phrase in (
        "HIPAA Safe Harbor",
        "Expert Determination",
        "singling out",
        "PS3.15",
        "adaptive attacker",
        "Phantom patients are synthetic",
    ):
        assert phrase in html
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from the network
    assert html.count("data:image/png;base64,") == 5


def test_report_json_round_trips(written: ReportPaths) -> None:
    assert json.loads(written.json.read_text(encoding="utf-8")) == sample_results()


def test_verdict_levels_follow_threshold_and_metadata() -> None:
    results = sample_results()
    assert decide_verdict(results).level == "red"
    clean = copy.deepcopy(results)
    clean["metadata"].update(
        direct_identifier_files=0,
        private_tags_files=0,
        burned_in_annotation_files=0,
        identity_not_removed_files=0,
    )
    clean["options"]["fail_above"] = 0.5
    assert decide_verdict(clean).level == "amber"  # 25% at risk, within 50%
    clean["linkage"].update(n_at_risk=0, share_at_risk=0.0)
    verdict = decide_verdict(clean)
    assert verdict.level == "green"
    assert "0.50" in verdict.threshold_rationale


def test_a_weak_re_identifier_never_gives_a_green_verdict() -> None:
    clean = sample_results()
    clean["metadata"].update(
        direct_identifier_files=0,
        private_tags_files=0,
        burned_in_annotation_files=0,
        identity_not_removed_files=0,
    )
    clean["linkage"].update(n_at_risk=0, share_at_risk=0.0)
    clean["checkpoint"]["validation_rank1"] = 0.9
    assert decide_verdict(clean).level == "green"
    clean["checkpoint"]["validation_rank1"] = 0.12
    verdict = decide_verdict(clean)
    assert verdict.level == "amber"
    assert any("re-identifier is weak" in reason and "12%" in reason for reason in verdict.reasons)


def test_invalid_results_are_rejected_with_a_remedy() -> None:
    results = sample_results()
    del results["linkage"]
    with pytest.raises(InputError, match="lack the sections"):
        render_html(results)
    results = sample_results()
    results["linkage"]["max_risk"] = float("nan")
    with pytest.raises(InputError, match="use None"):
        render_html(results)
    results = sample_results()
    results["linkage"]["max_risk"] = np.float32(0.3)
    with pytest.raises(InputError, match="float"):
        render_html(results)


def test_optional_sections_say_why_they_are_empty(tmp_path: Path) -> None:
    results = sample_results()
    results["truth"] = None
    results["gallery"] = None
    html = render_html(results)
    assert "--truth CSV" in html and "--gallery DIR" in html
    assert html.count("data:image/png;base64,") == 1


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium_without_errors(
    tmp_path: Path, written: ReportPaths
) -> None:
    paths = written
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            paths.html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert shot.exists() and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    console = re.findall(r".*(?:Uncaught|CONSOLE|Refused to|net::ERR).*", proc.stderr)
    assert not console, console
