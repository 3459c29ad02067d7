"""benchmarks/slice_pooling.py: mean pooling matches the model's own volume embedding, the
attention scorer learns to weight the slices that carry identity, and the script runs end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from benchmark_scripts import load_benchmark
from phantom_cohorts import phantom_spec
from test_score import make_checkpoint

from reid_model.checkpoint import load_checkpoint
from reid_model.data import ReidDataset, open_source, split_entries
from reid_model.losses import triplet_loss

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = phantom_spec("chest_ct", 10, n_train=3, n_val=1)  # 4 test patients


def load_script():
    return load_benchmark("slice_pooling")


def test_mean_pooling_is_the_models_volume_embedding(tmp_path: Path) -> None:
    script = load_script()
    model = load_checkpoint(make_checkpoint(tmp_path / "ckpt"))[0].eval()
    source = open_source(DATA)
    entries, features = script.slice_features(model, source, "test", torch.device("cpu"))
    dataset = ReidDataset(source, split_entries(source, "test"), model.cfg.preprocess)
    expected = torch.cat([model.embed(dataset[i].pixels.unsqueeze(0)) for i in range(len(entries))])
    pooled = F.normalize(model.bnneck(script.pool(features, None)), dim=-1)
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-4)


def test_attention_learns_to_weight_the_identity_slices() -> None:
    script = load_script()
    rng = torch.Generator().manual_seed(0)
    identity = torch.randn(12, 8, generator=rng)  # 12 patients, 8-dim features
    features, labels = [], []
    for patient in range(12):
        for _visit in range(2):
            noise = 3.0 * torch.randn(6, 8, generator=rng)  # 6 slices, mostly noise
            slices = torch.cat([noise, torch.zeros(6, 1)], 1)
            slices[0, :8], slices[0, 8] = identity[patient], 4.0  # one marked slice tells who
            features.append(slices)
            labels.append(patient)
    target = torch.tensor(labels)
    scorer = script.fit_attention(features, labels, steps=150, seed=0, p=6, k=2, lr=0.05)
    with torch.no_grad():
        mean_loss = triplet_loss(script.pool(features, None), target, margin=0.0)
        attention_loss = triplet_loss(script.pool(features, scorer), target, margin=0.0)
        weights = scorer(features[0]).squeeze(-1).softmax(0)
    assert attention_loss < 0.5 * mean_loss
    assert float(weights[0]) > 0.5  # the marked slice dominates the pooled feature


def test_script_writes_both_rows(tmp_path: Path) -> None:
    script = load_script()
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    argv = [
        "--checkpoint", str(checkpoint), "--fit-data", DATA, "--data", DATA, "--steps", "3",
        "--device", "cpu", "--out", str(tmp_path / "pool.json"), "--append", str(tmp_path / "r.md"),
    ]  # fmt: skip
    assert script.main(argv) == 0
    result = json.loads((tmp_path / "pool.json").read_text())
    assert set(result["rows"]) == {"mean", "attention"}
    for rows in result["rows"].values():
        assert set(rows) == {"chest_ct"} and 0.0 <= rows["chest_ct"]["rank1"] <= 1.0
    assert "| chest_ct | attention |" in (tmp_path / "r.md").read_text()
