"""Evaluation protocol, embedding of mixed shapes, and the ``deid evaluate`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from phantom_cohorts import phantom_spec

from deid.cli.evaluate import evaluate as evaluate_command
from reid_model.data import ImageEntry
from reid_model.evaluate import embed, query_gallery_pairs, query_mask
from reid_model.train import main as train_main

# 2 patients in the val split of each dataset
DATA = phantom_spec("cxr_site_a,cxr_site_b", 7, n_train=4, n_val=2)


def entry(patient: str, visit: int, dataset: str = "d") -> ImageEntry:
    return ImageEntry(patient, dataset, visit, "test")


def test_query_mask_takes_one_visit_per_patient_with_a_gallery() -> None:
    entries = [entry("a", 0), entry("a", 1), entry("a", 2), entry("b", 0), entry("b", 1)]
    entries.append(entry("c", 0))  # a single visit: distractor in the gallery
    mask = query_mask(entries)
    assert mask.tolist().count(True) == 2
    assert mask[:3].sum() == 1 and mask[3:5].sum() == 1 and not mask[5]
    assert query_mask(entries[::-1]).tolist() == mask[::-1].tolist()  # order does not matter


def test_query_gallery_pairs_stay_within_a_dataset() -> None:
    emb = np.eye(4, dtype=np.float32)[[0, 0, 1, 2, 2, 3]]
    pids = np.array([0, 0, 1, 2, 2, 3])
    is_query = np.array([True, False, False, True, False, False])
    groups = np.array(["x", "x", "x", "y", "y", "y"])
    scores, same = query_gallery_pairs(emb, pids, is_query, groups)
    # x: query 0 against items 1 (same, 1.0) and 2 (other, 0.0); y: query 3 against 4 and 5
    assert scores.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert same.tolist() == [True, False, True, False]


class MeanModel(torch.nn.Module):
    """Embeds an image as its per-channel mean; volumes as the mean over slices."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        dims = (1, 3, 4) if x.ndim == 5 else (2, 3)
        return {"embedding": x.mean(dim=dims) + torch.tensor([1.0, 0.0, 0.0])}


class ListDataset:
    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, i: int):
        return type("Sample", (), {"pixels": self.tensors[i]})


def test_embed_batches_items_of_equal_shape_and_keeps_order() -> None:
    g = torch.Generator().manual_seed(0)
    tensors = [
        torch.randn(3, 8, 8, generator=g),
        torch.randn(3, 8, 8, generator=g),
        torch.randn(4, 3, 8, 8, generator=g),
        torch.randn(2, 3, 8, 8, generator=g),
        torch.randn(3, 8, 8, generator=g),
    ]
    model = MeanModel().train()
    emb = embed(model, ListDataset(tensors), batch_size=2)
    assert emb.shape == (5, 3) and model.training
    for row, x in zip(emb, tensors, strict=True):
        expected = torch.nn.functional.normalize(MeanModel()(x[None])["embedding"], dim=1)[
            0
        ].numpy()
        np.testing.assert_allclose(row, expected, atol=1e-6)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory):
    run = tmp_path_factory.mktemp("run")
    train_main(["--preset", "test", "--data", DATA, "--out", str(run), "--quiet"])
    return run / "model"


def test_evaluate_cli_prints_per_dataset_metrics_and_writes_json(checkpoint, tmp_path) -> None:
    out = tmp_path / "eval.json"
    args = ["--checkpoint", str(checkpoint), "--data", DATA, "--split", "val"]
    result = CliRunner().invoke(evaluate_command, [*args, "--bootstrap", "20", "--json", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:5] == ["dataset", "rank-1", "rank-5", "rank-10", "mAP"]
    assert [line.split()[0] for line in lines[1:4]] == ["overall", "cxr_site_a", "cxr_site_b"]

    saved = json.loads(out.read_text())
    assert saved["split"] == "val" and saved["n_boot"] == 20
    site_a = saved["datasets"]["cxr_site_a"]
    assert site_a["n_queries"] == 2 and site_a["n_gallery"] == 2
    for key in ("rank1", "rank5", "rank10", "mAP", "auc", "tar_at_far"):
        assert 0.0 <= site_a[key] <= 1.0
        low, high = site_a["ci95"][key]
        assert low <= high
    assert site_a["rank1"] <= site_a["rank5"] <= site_a["rank10"] == 1.0  # 2-image gallery

    again = CliRunner().invoke(evaluate_command, [*args, "--bootstrap", "20", "--json", str(out)])
    assert json.loads(out.read_text()) == saved  # seeded bootstrap: same numbers
    assert again.exit_code == 0


def test_evaluate_cli_reports_bad_input_as_a_one_line_error(checkpoint, tmp_path) -> None:
    result = CliRunner().invoke(
        evaluate_command, ["--checkpoint", str(checkpoint), "--data", str(tmp_path / "nope")]
    )
    assert result.exit_code != 0
    assert "does not exist" in result.output
    result = CliRunner().invoke(
        evaluate_command, ["--checkpoint", str(tmp_path), "--data", DATA, "--split", "val"]
    )
    assert result.exit_code != 0
    assert "is missing" in result.output


def test_checkpoint_names_resolve_to_shipped_folders_only_when_no_path_exists(tmp_path) -> None:
    from reid_model.evaluate import SHIPPED_DIR, resolve_checkpoint

    assert resolve_checkpoint(tmp_path) == tmp_path
    assert resolve_checkpoint("no-such-checkpoint") == Path("no-such-checkpoint")
    shipped = [p for p in SHIPPED_DIR.iterdir() if p.is_dir()] if SHIPPED_DIR.is_dir() else []
    for folder in shipped:
        assert resolve_checkpoint(folder.name) == folder
