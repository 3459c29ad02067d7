"""Training of the phantom MFM and the phantom diagnosis classifier."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from phantom_cohorts import phantom_spec

from deid.cli.train import train as train_command
from deid.errors import CheckpointError
from reid_model.config import PRESET_DIR
from reid_model.data import ImageEntry
from reid_model.train import main as train_main
from reid_model.train_mfm import (
    DiagnosisNet,
    finding_aucs,
    finding_targets,
    load_diagnosis,
    masked_bce,
)

DATA = phantom_spec("cxr_site_a,fundus", 7, n_train=4, n_val=2)


def test_finding_targets_mask_findings_a_dataset_does_not_label() -> None:
    entries = [
        ImageEntry("a", "cxr", 0, "train", {"nodule": True, "opacity": False}),
        ImageEntry("b", "fundus", 0, "train", {"exudates": True}),
    ]
    targets, mask = finding_targets(entries, ("exudates", "nodule", "opacity"))
    assert targets.tolist() == [[0, 1, 0], [1, 0, 0]]
    assert mask.tolist() == [[False, True, True], [True, False, False]]


def test_masked_bce_ignores_unlabelled_entries() -> None:
    logits = torch.tensor([[0.0, 100.0], [2.0, -100.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[True, False], [True, False]])
    expected = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert float(masked_bce(logits, targets, mask)) == pytest.approx(expected)


def test_finding_aucs_per_dataset_skip_single_class() -> None:
    scores = np.array([[0.9], [0.1], [0.8], [0.2], [0.5]])
    targets = np.array([[1], [0], [0], [1], [1]], dtype=float)
    mask = np.ones((5, 1), dtype=bool)
    aucs = finding_aucs(scores, targets, mask, ["a", "a", "b", "b", "c"], ["nodule"])
    assert aucs == {"a": {"nodule": 1.0}, "b": {"nodule": 0.0}}  # "c" has one class only


def test_diagnosis_net_max_pools_volumes_over_slices() -> None:
    torch.manual_seed(0)
    net = DiagnosisNet(("a", "b"), width=4).eval()
    volume = torch.randn(2, 3, 3, 32, 32)
    per_slice = net(volume.flatten(0, 1)).view(2, 3, 2)
    torch.testing.assert_close(net(volume), per_slice.amax(dim=1))
    with pytest.raises(ValueError, match="expected"):
        net(torch.randn(3, 32, 32))


def test_diagnosis_training_writes_a_loadable_classifier(tmp_path) -> None:
    run = tmp_path / "diag"
    args = ["--task", "diagnosis", "--preset", "test", "--data", DATA, "--out", str(run)]
    result = CliRunner().invoke(train_command, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    model, preprocess_cfg, config = load_diagnosis(run / "model")
    assert preprocess_cfg.img_size == 32
    assert set(model.findings) == {
        "opacity",
        "nodule",
        "cardiomegaly",
        "effusion",
        "microaneurysms",
        "haemorrhages",
        "exudates",
    }
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, len(model.findings))
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 1 and math.isfinite(history[0]["loss"])
    for per_finding in config["extra"]["val"]["auc"].values():
        assert all(0.0 <= auc <= 1.0 for auc in per_finding.values())
    with pytest.raises(CheckpointError, match="is missing"):
        load_diagnosis(tmp_path)


def test_mfm_training_writes_a_phantom_mfm_the_model_can_load(tmp_path) -> None:
    from reid_model.config import PreprocessConfig
    from reid_model.mfm import load_mfm

    run = tmp_path / "mfm"
    result = CliRunner().invoke(
        train_command,
        ["--task", "mfm", "--preset", "test", "--data", DATA, "--out", str(run), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    frozen = load_mfm(f"phantom-mfm:{run / 'model'}", PreprocessConfig(img_size=64))
    tokens = frozen(torch.randn(2, 3, 64, 64))
    assert tokens.shape == (2, 4, 4, 32)  # test preset: 32 px, patch 8, width 32
    assert frozen.net.cfg.modalities == ("CT", "MR", "OP", "XR")
    with pytest.raises(CheckpointError, match="not a phantom-diagnosis checkpoint"):
        load_diagnosis(run / "model")
    record = json.loads((run / "history.json").read_text())[0]
    assert 0.0 <= record["val"]["modality_accuracy"] <= 1.0

    # the re-identifier aligns its part features with this MFM when its preset names it
    preset = json.loads((PRESET_DIR / "test.json").read_text())
    preset["model"]["mfm"] = [f"phantom-mfm:{run / 'model'}"]
    (tmp_path / "preset.json").write_text(json.dumps(preset))
    reid = tmp_path / "reid"
    train_main(
        ["--preset", str(tmp_path / "preset.json"), "--data", DATA, "--out", str(reid), "--quiet"]
    )
    losses = json.loads((reid / "history.json").read_text())[0]["losses"]
    assert losses["align"] > 0
    assert losses["total"] == pytest.approx(
        losses["id"] + losses["triplet"] + 0.01 * losses["align"], rel=1e-5
    )
