"""Training of the re-identifier: CLI smoke run, determinism, exact resume, DDP with gloo."""

from __future__ import annotations

import json
import math
import os
import socket

import pytest
import torch
from click.testing import CliRunner
from phantom_cohorts import phantom_spec
from safetensors.torch import load_file

from deid.cli.train import train as train_command
from deid.errors import InputError, OutputError
from reid_model.checkpoint import load_checkpoint
from reid_model.phantoms.protocol import split_of
from reid_model.train import main, parameter_groups, warmup_cosine

# 2 datasets x 7 patients x 2 visits (batches need P = 4 training patients)
DATA = phantom_spec("cxr_site_a,cxr_site_b", 7, n_train=4, n_val=2)
DDP_DATA = phantom_spec("cxr_site_a", 6, n_train=4, n_val=2)  # rendered in each process
TRAIN_PATIENTS = sum(split_of(i, int(DATA.rsplit(":", 1)[1])) == "train" for i in range(7))


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def history(run) -> list[dict]:
    return json.loads((run / "history.json").read_text())


def test_cli_smoke_run_writes_a_loadable_calibrated_checkpoint(tmp_path) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(
        train_command, ["--preset", "test", "--data", DATA, "--out", str(run), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    model, cfg, meta = load_checkpoint(run / "model")
    assert cfg.backbone.img_size == 32
    assert meta["num_classes"] == 2 * TRAIN_PATIENTS  # one class per training patient
    assert meta["calibration"] is not None
    assert meta["extra"]["data"] == DATA and meta["extra"]["epoch"] == 1
    x = torch.randn(2, 3, 32, 32)
    assert model.embed(x).shape == (2, cfg.head.embed_dim)

    (record,) = history(run)
    assert set(record["losses"]) == {"id", "triplet", "align", "total"}
    assert all(math.isfinite(v) for v in record["losses"].values())
    assert record["losses"]["id"] > 0 and record["images_per_s"] > 0
    assert set(record["val"]) == {"overall", "cxr_site_a", "cxr_site_b"}
    assert 0.0 <= record["val"]["cxr_site_a"]["rank1"] <= 1.0
    assert (run / "LATEST").read_text().strip() == "epoch-001"

    again = CliRunner().invoke(
        train_command, ["--preset", "test", "--data", DATA, "--out", str(run)]
    )
    assert again.exit_code != 0
    assert "pass --resume" in again.output


def test_same_seed_gives_identical_weights_and_another_seed_does_not(tmp_path) -> None:
    args = ["--preset", "test", "--data", DATA, "--quiet"]
    main([*args, "--out", str(tmp_path / "a")])
    main([*args, "--out", str(tmp_path / "b")])
    main([*args, "--out", str(tmp_path / "c"), "--seed", "1"])
    a, b, c = (weights(tmp_path / name / "model") for name in "abc")
    assert_same_weights(a, b)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_resume_continues_exactly_where_the_run_stopped(tmp_path) -> None:
    args = ["--preset", "test", "--data", DATA, "--quiet", "--epochs", "2"]
    main([*args, "--out", str(tmp_path / "full")])
    main([*args, "--out", str(tmp_path / "parts"), "--stop-after", "1"])
    assert not (tmp_path / "parts" / "model").exists()
    assert len(history(tmp_path / "parts")) == 1
    main([*args, "--out", str(tmp_path / "parts"), "--resume"])

    assert_same_weights(weights(tmp_path / "full" / "model"), weights(tmp_path / "parts" / "model"))
    assert history(tmp_path / "full") == [
        {**h, "images_per_s": h_full["images_per_s"]}
        for h, h_full in zip(history(tmp_path / "parts"), history(tmp_path / "full"), strict=True)
    ]
    with pytest.raises(OutputError, match="differ"):
        main([*args[:-1], "3", "--out", str(tmp_path / "parts"), "--resume"])


def test_resume_needs_a_finished_epoch(tmp_path) -> None:
    with pytest.raises(OutputError, match="no finished epoch"):
        main(["--preset", "test", "--data", DATA, "--out", str(tmp_path), "--resume"])


def test_too_few_patients_for_a_batch_is_an_input_error(tmp_path) -> None:
    seed = next(s for s in range(1000) if [split_of(i, s) for i in range(3)].count("train") == 3)
    data = f"phantom:cxr_site_a:3:2:{seed}"  # 3 training patients, batches need P = 4
    with pytest.raises(InputError, match="3 patients but a batch needs P=4"):
        main(["--preset", "test", "--data", data, "--out", str(tmp_path)])


def test_warmup_then_cosine() -> None:
    factor = warmup_cosine(warmup_steps=4, total_steps=14, floor=0.01)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == pytest.approx(1.0)
    assert factor(9) == pytest.approx(0.01 + 0.99 * 0.5)
    assert factor(14) == pytest.approx(0.01)
    assert warmup_cosine(0, 10)(0) == pytest.approx(1.0)


def test_no_weight_decay_on_norms_biases_and_bases() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    model.register_parameter("bases", torch.nn.Parameter(torch.zeros(2, 4)))
    frozen = torch.nn.Linear(4, 4)
    frozen.requires_grad_(False)
    model.append(frozen)
    decay, no_decay = parameter_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert len(no_decay["params"]) == 4  # linear bias, norm weight and bias, bases


def _ddp_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(1)
    # one dataset: each process renders its own copy of the data
    main(["--preset", "test", "--data", DDP_DATA, "--out", out, "--quiet", "--device", "cpu"])


@pytest.mark.slow
def test_ddp_with_two_gloo_processes(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    model, _, meta = load_checkpoint(tmp_path / "model")
    assert meta["extra"]["epoch"] == 1
    (record,) = history(tmp_path)
    assert all(math.isfinite(v) for v in record["losses"].values())
    assert all(torch.isfinite(p).all() for p in model.parameters())
