import json
from pathlib import Path

import pytest
import torch

import reid_model.mfm as mfm_module
from deid.errors import CheckpointError, InputError
from reid_model.config import PreprocessConfig, load_preset
from reid_model.mfm import (
    MFMBag,
    PhantomMFMConfig,
    PhantomMFMNet,
    load_mfm,
    load_phantom_mfm,
    pool_with_maps,
    save_phantom_mfm,
)
from reid_model.model import build_model

TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {
        "image_size": 32,
        "layers": 2,
        "width": 32,
        "head_width": 16,
        "patch_size": 8,
        "mlp_ratio": 2.0,
    },
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}
TINY_CLIP_MEAN = (0.5, 0.4, 0.3)
TINY_CLIP_STD = (0.2, 0.25, 0.3)


# ---------------------------------------------------------------- stand-ins, saved locally


def tiny_open_clip(seed: int = 0, quick_gelu: bool = False) -> torch.nn.Module:
    """A randomly initialised open_clip CLIP with a 2-block ViT-32px image tower."""
    import open_clip

    torch.manual_seed(seed)
    return open_clip.model.CLIP(**TINY_CLIP_CFG, quick_gelu=quick_gelu).eval()


def save_tiny_open_clip_dir(folder: Path, seed: int = 0) -> torch.nn.Module:
    """An open_clip ``local-dir`` folder (config + safetensors), as a user's download would be."""
    from safetensors.torch import save_file

    model = tiny_open_clip(seed)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": TINY_CLIP_CFG,
        "preprocess_cfg": {"mean": list(TINY_CLIP_MEAN), "std": list(TINY_CLIP_STD)},
    }
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return model


def save_tiny_phantom_mfm(
    folder: Path, seed: int = 0, embed_dim: int = 24, stem: str = "patch"
) -> PhantomMFMNet:
    torch.manual_seed(seed)
    net = PhantomMFMNet(
        PhantomMFMConfig(
            findings=("nodule", "effusion"),
            modalities=("cxr_site_a", "chest_ct"),
            img_size=16,
            patch_size=4,
            embed_dim=embed_dim,
            depth=1,
            num_heads=2,
            stem=stem,
        )
    )
    save_phantom_mfm(folder, net.eval(), extra={"note": "random"})
    return net.eval()


@pytest.fixture(scope="module")
def cfg():
    return load_preset("test")[0]


def _reid_input(n=2, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _renormalised(x, src: PreprocessConfig, mean, std):
    unit = x * torch.tensor(src.std).view(1, 3, 1, 1) + torch.tensor(src.mean).view(1, 3, 1, 1)
    return (unit - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


# ---------------------------------------------------------------- phantom MFM


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_phantom_mfm_round_trip_and_heads(tmp_path, stem):
    net = save_tiny_phantom_mfm(tmp_path / "mfm", stem=stem)
    loaded = load_phantom_mfm(tmp_path / "mfm")
    x = torch.randn(2, 3, 16, 16)
    out, ref = loaded(x), net(x)
    assert out["findings_logits"].shape == (2, 2) and out["modality_logits"].shape == (2, 2)
    assert out["tokens"].shape == (2, 16, 24)
    for key in out:
        torch.testing.assert_close(out[key], ref[key], rtol=0, atol=0)


def test_phantom_mfm_conv_stem_is_convolutional_and_checked(tmp_path):
    net = save_tiny_phantom_mfm(tmp_path / "mfm", stem="conv")
    assert any(isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2) for m in net.modules())
    with pytest.raises(InputError, match="power-of-two"):
        PhantomMFMConfig(findings=("a",), modalities=("x",), patch_size=6, stem="conv")
    with pytest.raises(InputError, match="stem must be"):
        PhantomMFMConfig(findings=("a",), modalities=("x",), stem="hybrid")


def test_missing_phantom_mfm_says_to_train_it(tmp_path, monkeypatch):
    monkeypatch.setattr(mfm_module, "PHANTOM_MFM_DIR", tmp_path / "absent")
    with pytest.raises(CheckpointError, match="Train it first"):
        load_mfm("phantom-mfm")


def test_frozen_mfm_has_no_trainable_parameters_but_passes_input_gradient(tmp_path, cfg):
    net = save_tiny_phantom_mfm(tmp_path / "mfm")
    frozen = load_mfm(f"phantom-mfm:{tmp_path / 'mfm'}", cfg.preprocess)
    assert all(not p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert not frozen.training and not frozen.net.training
    x = _reid_input().requires_grad_(True)
    tokens = frozen(x)
    assert tokens.shape == (2, 4, 4, 24) and frozen.dim == 24
    tokens.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen.parameters())
    # re-normalised to the MFM's statistics and resized to its 16 px input
    own = _renormalised(x.detach(), cfg.preprocess, net.cfg.mean, net.cfg.std)
    unit_resized = torch.nn.functional.interpolate(
        own * torch.tensor(net.cfg.std).view(1, 3, 1, 1)
        + torch.tensor(net.cfg.mean).view(1, 3, 1, 1),
        size=(16, 16),
        mode="bilinear",
        antialias=True,
    )
    own16 = (unit_resized - torch.tensor(net.cfg.mean).view(1, 3, 1, 1)) / torch.tensor(
        net.cfg.std
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(
        tokens.detach().reshape(2, 16, 24), net(own16)["tokens"], rtol=1e-4, atol=1e-5
    )


# ---------------------------------------------------------------- open_clip MFM


def test_open_clip_local_dir_gives_the_visual_trunk_patch_tokens(tmp_path, cfg):
    clip = save_tiny_open_clip_dir(tmp_path / "clip")
    frozen = load_mfm(f"open_clip:local-dir:{tmp_path / 'clip'}", cfg.preprocess)
    assert frozen.dim == 32 and frozen.grid == (4, 4)
    assert all(not p.requires_grad for p in frozen.parameters())
    x = _reid_input()
    clip.visual.output_tokens = True
    _, expected = clip.visual(_renormalised(x, cfg.preprocess, TINY_CLIP_MEAN, TINY_CLIP_STD))
    torch.testing.assert_close(frozen(x).reshape(2, 16, 32), expected, rtol=1e-4, atol=1e-5)


def test_open_clip_by_model_name_and_weights_file(tmp_path, cfg):
    import open_clip

    (tmp_path / "mami-tiny-test.json").write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(tmp_path / "mami-tiny-test.json")
    clip = tiny_open_clip(seed=3)
    torch.save(clip.state_dict(), tmp_path / "weights.pt")
    frozen = load_mfm(f"open_clip:mami-tiny-test:{tmp_path / 'weights.pt'}", cfg.preprocess)
    clip.visual.output_tokens = True
    x = _reid_input(seed=1)
    _, expected = clip.visual(
        _renormalised(
            x, cfg.preprocess, frozen.mean.flatten().tolist(), frozen.std.flatten().tolist()
        )
    )
    torch.testing.assert_close(frozen(x).reshape(2, 16, 32), expected, rtol=1e-4, atol=1e-5)


def test_biomedclip_style_folder_loads_offline_without_its_text_tower(tmp_path):
    """A timm image trunk plus a Hugging Face text config, as in BiomedCLIP's download: only the
    image tower is built, so no tokenizer or text model is looked up."""
    from open_clip.model import _build_vision_tower

    vision_cfg = {
        "timm_model_name": "vit_tiny_patch16_224",
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "linear",
        "image_size": 32,
    }
    text_cfg = {
        "hf_model_name": "not-reachable/offline-bert",
        "hf_tokenizer_name": "none",
        "context_length": 16,
    }
    torch.manual_seed(0)
    visual = _build_vision_tower(16, vision_cfg).eval()
    state = {"visual." + k: v for k, v in visual.state_dict().items()}
    state["text.proj.weight"] = torch.zeros(2, 2)  # text weights are ignored
    torch.save(state, tmp_path / "open_clip_pytorch_model.bin")
    config = {
        "model_cfg": {"embed_dim": 16, "vision_cfg": vision_cfg, "text_cfg": text_cfg},
        "preprocess_cfg": {"mean": list(TINY_CLIP_MEAN), "std": list(TINY_CLIP_STD)},
    }
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))
    src = PreprocessConfig(img_size=32)
    frozen = load_mfm(f"open_clip:local-dir:{tmp_path}", src)
    # open_clip builds the timm trunk at its default 224 px: the wrapper follows the trunk
    assert frozen.dim == 192 and frozen.grid == (14, 14) and frozen.img_size == (224, 224)
    x = _reid_input()
    unit = x * torch.tensor(src.std).view(1, 3, 1, 1) + torch.tensor(src.mean).view(1, 3, 1, 1)
    unit = torch.nn.functional.interpolate(unit, size=(224, 224), mode="bilinear", antialias=True)
    own = (unit - torch.tensor(TINY_CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(TINY_CLIP_STD).view(
        1, 3, 1, 1
    )
    expected = visual.trunk.forward_features(own)[:, 1:]
    torch.testing.assert_close(frozen(x).reshape(2, 196, 192), expected, rtol=1e-4, atol=1e-5)


def test_bad_specs_are_explained(tmp_path):
    with pytest.raises(InputError, match="Unknown MFM spec"):
        load_mfm("biomedclip")
    with pytest.raises(InputError, match="open_clip:<model name>"):
        load_mfm("open_clip:ViT-B-16")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_mfm(f"open_clip:ViT-B-16:{tmp_path / 'none.bin'}")
    (tmp_path / "w.pt").write_bytes(b"")
    with pytest.raises(InputError, match="no model 'ViT-Q-99'"):
        load_mfm(f"open_clip:ViT-Q-99:{tmp_path / 'w.pt'}")
    save_tiny_open_clip_dir(tmp_path / "clip")
    (tmp_path / "clip" / "open_clip_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights file"):
        load_mfm(f"open_clip:local-dir:{tmp_path / 'clip'}")


# ---------------------------------------------------------------- alignment targets


def test_pool_with_maps_on_hand_computed_cases():
    tokens = torch.arange(2 * 2 * 2 * 3, dtype=torch.float32).view(2, 2, 2, 3)
    uniform = torch.ones(2, 1, 2, 2)
    torch.testing.assert_close(pool_with_maps(tokens, uniform)[:, 0], tokens.mean(dim=(1, 2)))
    one_hot = torch.zeros(2, 1, 2, 2)
    one_hot[:, 0, 1, 0] = 5.0  # unnormalised: pooling renormalises
    torch.testing.assert_close(pool_with_maps(tokens, one_hot)[:, 0], tokens[:, 1, 0])


def test_align_targets_pool_every_mfm_with_the_query_maps(tmp_path, cfg):
    save_tiny_phantom_mfm(tmp_path / "mfm")
    save_tiny_open_clip_dir(tmp_path / "clip")
    bag = MFMBag(
        [
            load_mfm(f"phantom-mfm:{tmp_path / 'mfm'}", cfg.preprocess),
            load_mfm(f"open_clip:local-dir:{tmp_path / 'clip'}", cfg.preprocess),
        ]
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.align_targets(_reid_input()) is None
    model.attach_mfm(bag)
    x = _reid_input()
    out = model(x)
    n = cfg.head.num_queries
    assert out["parts_proj"].shape == (2, n, 24 + 32)
    targets = model.align_targets(x, attn=out["attn"])
    assert targets.shape == (2, n, 24 + 32) and not targets.requires_grad
    torch.testing.assert_close(model.align_targets(x), targets)
    maps = out["attn"].detach().view(2, n, 4, 4)
    expected = torch.cat([pool_with_maps(m(x), maps) for m in bag.members], dim=-1)
    torch.testing.assert_close(targets, expected)
    vols = torch.stack([_reid_input(3, seed=1), _reid_input(3, seed=2)])
    vol_targets = model.align_targets(vols)
    per_slice = model.align_targets(vols.flatten(0, 1)).view(2, 3, n, -1)
    torch.testing.assert_close(vol_targets, per_slice.mean(1), rtol=1e-4, atol=1e-5)


def test_attaching_an_mfm_of_another_width_is_refused(tmp_path, cfg):
    from reid_model.model import MaMI

    save_tiny_phantom_mfm(tmp_path / "mfm", embed_dim=24)
    model = MaMI(cfg, mfm_dim=40)
    with pytest.raises(InputError, match="40 features"):
        model.attach_mfm(load_mfm(f"phantom-mfm:{tmp_path / 'mfm'}", cfg.preprocess))
