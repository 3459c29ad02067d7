"""Smoke test of benchmarks/scrub_frontier.py: random tiny models, a few phantom images, two
gradient steps; every judge reports numbers in range and the figure and record are written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from benchmark_scripts import load_benchmark
from phantom_cohorts import phantom_spec
from test_optimizer_pipeline import save_tiny_adversary

from deid.scrub.frontier import measured_for
from deid.scrub.pixel_settings import settings_for
from reid_model.checkpoint import save_checkpoint
from reid_model.config import PreprocessConfig, load_preset
from reid_model.data import open_source, split_entries
from reid_model.model import build_model
from reid_model.train_mfm import DiagnosisNet, save_diagnosis

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# a few test-split patients per dataset beside >= 3 training patients
DATA = phantom_spec("cxr_site_a,fundus", 12, n_train=3, n_val=2)


def load_script():
    return load_benchmark("scrub_frontier")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The pixel-scrub test models, plus an attacker and a diagnosis model (random weights)."""
    root = tmp_path_factory.mktemp("frontier-models")
    reid, mfm = save_tiny_adversary(root)
    cfg, _ = load_preset("test")
    torch.manual_seed(1)
    save_checkpoint(root / "attacker", build_model(cfg, with_mfm=False), cfg)
    findings = ("opacity", "nodule", "cardiomegaly", "effusion", "exudates", "haemorrhages")
    save_diagnosis(root / "diag", DiagnosisNet(findings, 4), PreprocessConfig(img_size=32), {})
    return {"reid": reid, "mfm": mfm, "attacker": root / "attacker", "diag": root / "diag"}


def test_frontier_measures_every_judge(models: dict[str, Path], tmp_path: Path, capsys) -> None:
    script = load_script()
    argv = [
        "--reid", str(models["reid"]),
        "--attacker", str(models["attacker"]),
        "--diagnosis", str(models["diag"]),
        "--mfm", f"phantom-mfm:{models['mfm']}",
        "--data", DATA,
        "--strengths", "none,low",
        "--adaptive", "low",
        "--adapt-steps", "2",
        "--adapt-patients", "3",
        "--set", "steps=2",
        "--set", "eot_samples=1",
        "--set", "momentum=1",
        "--set", "lambda_decoy=0.5",
        "--device", "cpu",
        "--out", str(tmp_path / "frontier.json"),
        "--plot", str(tmp_path / "frontier.png"),
        "--append", str(tmp_path / "record.md"),
        "--summary", str(tmp_path / "measured.json"),
    ]  # fmt: skip
    assert script.main(argv) == 0
    result = json.loads((tmp_path / "frontier.json").read_text())
    none, low = result["rows"]
    assert (none["strength"], low["strength"]) == ("none", "low")
    assert result["references"] is True  # as deid scrub does with the release
    assert (low["settings"]["momentum"], low["settings"]["lambda_decoy"]) == (1.0, 0.5)
    test_images = len(split_entries(open_source(DATA), "test"))
    assert none["images"] == low["images"] == test_images >= 4
    assert none["diagnosis_auc"] == result["diagnosis_auc_original"]
    assert none["diagnosis_auc_drop"] == 0.0 and "adaptive" not in none
    per_finding = low["diagnosis_auc_per_finding"]
    assert (
        per_finding.keys() == none["diagnosis_auc_per_finding"].keys() <= {"cxr_site_a", "fundus"}
    )
    values = [v for per in per_finding.values() for v in per.values()]
    assert values and low["diagnosis_auc"] == pytest.approx(sum(values) / len(values))
    assert 0.0 < low["ssim"] <= 1.0 and low["linf_unit"] <= low["settings"]["epsilon"] + 1e-3
    assert low["settings"]["steps"] == 2
    for row in (none, low):
        for judge in ("whitebox", "attacker"):
            assert 0.0 <= row[judge]["rank1"] <= 1.0 and 0.0 <= row[judge]["auc"] <= 1.0
    assert 0.0 <= low["adaptive"]["auc"] <= 1.0
    assert (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    record = (tmp_path / "record.md").read_text()
    assert record.strip() in capsys.readouterr().out
    assert "| low | 0.015 | 2 |" in record and "| diagnostic AUC | none | low |" in record
    # the scrub report finds these measurements by the cleaner's settings
    described = {"strength": "custom", "seed": 0, **low["settings"]}
    quoted = measured_for(described, tmp_path / "measured.json")
    assert quoted["adaptive"] == {k: low["adaptive"][k] for k in ("rank1", "auc")}
    assert quoted["source"]["data"] == DATA and quoted["diagnosis_auc_drop"] == 0.0
    assert measured_for({**described, "steps": 5}, tmp_path / "measured.json") is None


def test_adapt_patients_keeps_whole_patients_per_dataset() -> None:
    script = load_script()
    entries, images = script.load_split(open_source(DATA), "train", None, patients=2)
    per_dataset: dict[str, set[str]] = {}
    for entry in entries:
        per_dataset.setdefault(entry.dataset, set()).add(entry.patient)
    assert {d: len(p) for d, p in per_dataset.items()} == {"cxr_site_a": 2, "fundus": 2}
    assert len(entries) == len(images) == 8  # 2 patients x 2 visits x 2 datasets


def test_shipped_measurements_match_the_named_strengths() -> None:
    # changing a strength without rerunning the frontier would leave the report silent about it
    for strength in ("low", "medium", "high"):
        settings = {"strength": strength, "seed": 0, **settings_for(strength).to_dict()}
        measured = measured_for(settings)
        assert measured is not None, f"rerun benchmarks/scrub_frontier.py for {strength!r}"
        assert measured["strength"] == strength
    assert "adaptive" in measured_for({**settings_for("medium").to_dict()})
