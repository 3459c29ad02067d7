import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_mfm import save_tiny_phantom_mfm

from deid.errors import CheckpointError
from reid_model.checkpoint import load_checkpoint, save_checkpoint
from reid_model.config import load_preset
from reid_model.mfm import load_mfm
from reid_model.model import build_model


@pytest.fixture(scope="module")
def cfg():
    return load_preset("test")[0]


def _trained_like(cfg, num_classes=3, mfm=None):
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=num_classes)
    if mfm is not None:
        model.attach_mfm(mfm)
    with torch.no_grad():  # move every weight off its init, BN statistics included
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.bnneck.running_mean.uniform_(-0.5, 0.5)
    return model.eval()


def test_round_trip_gives_identical_outputs_and_metadata(tmp_path, cfg):
    model = _trained_like(cfg)
    calibration = {"method": "isotonic", "x": [0.1, 0.9], "y": [0.0, 1.0]}
    save_checkpoint(tmp_path / "ckpt", model, cfg, calibration=calibration, extra={"epoch": 3})
    loaded, cfg2, meta = load_checkpoint(tmp_path / "ckpt")
    assert cfg2 == cfg and not loaded.training
    assert meta["calibration"] == calibration and meta["extra"] == {"epoch": 3}
    assert meta["preprocess"] == cfg.preprocess.to_dict() and meta["num_classes"] == 3
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ref, out = model(x), loaded(x)
    for key in ("embedding", "logits", "parts", "attn"):
        torch.testing.assert_close(out[key], ref[key], rtol=0, atol=0)


def test_parts_projection_survives_without_the_mfm(tmp_path, cfg):
    save_tiny_phantom_mfm(tmp_path / "mfm")
    mfm = load_mfm(f"phantom-mfm:{tmp_path / 'mfm'}", cfg.preprocess)
    model = _trained_like(cfg, mfm=mfm)
    save_checkpoint(tmp_path / "ckpt", model, cfg)
    loaded, _, meta = load_checkpoint(tmp_path / "ckpt")
    assert meta["mfm_dim"] == 24 and loaded.align_targets(torch.zeros(1, 3, 32, 32)) is None
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x)["parts_proj"], model(x)["parts_proj"])


def test_strict_load_names_missing_and_unexpected_keys(tmp_path, cfg):
    save_checkpoint(tmp_path / "ckpt", _trained_like(cfg), cfg)
    weights = tmp_path / "ckpt" / "model.safetensors"
    state = load_file(str(weights))
    del state["neck.weight"]
    state["extra_layer.weight"] = torch.zeros(2)
    save_file(state, str(weights))
    with pytest.raises(
        CheckpointError, match=r"missing keys \['neck.weight'\].*extra_layer.weight"
    ):
        load_checkpoint(tmp_path / "ckpt")
    model, _, meta = load_checkpoint(tmp_path / "ckpt", strict=False)
    assert meta["missing_keys"] == ["neck.weight"]
    assert meta["unexpected_keys"] == ["extra_layer.weight"]


def test_shape_mismatch_is_refused_even_when_not_strict(tmp_path, cfg):
    save_checkpoint(tmp_path / "ckpt", _trained_like(cfg), cfg)
    weights = tmp_path / "ckpt" / "model.safetensors"
    state = load_file(str(weights))
    state["neck.weight"] = torch.zeros(5, 5)
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="neck.weight"):
        load_checkpoint(tmp_path / "ckpt", strict=False)


def test_corrupt_or_missing_files_raise_checkpoint_errors_with_a_remedy(tmp_path, cfg):
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "nothing-here")
    save_checkpoint(tmp_path / "ckpt", _trained_like(cfg), cfg)
    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated.*train again"):
        load_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path / "ckpt")


def test_unknown_format_version_and_config_keys_are_refused(tmp_path, cfg):
    save_checkpoint(tmp_path / "ckpt", _trained_like(cfg), cfg)
    meta_path = tmp_path / "ckpt" / "config.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(tmp_path / "ckpt")
    meta["model_config"]["head"]["new_knob"] = 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="new_knob"):
        load_checkpoint(tmp_path / "ckpt")


def test_extra_must_be_json(tmp_path, cfg):
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "ckpt", _trained_like(cfg), cfg, extra={"x": object()})
