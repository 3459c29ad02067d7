import dataclasses

import pytest
import torch
from safetensors.torch import save_file
from test_mfm import tiny_open_clip

from deid.errors import CheckpointError
from reid_model.checkpoint import load_checkpoint, save_checkpoint
from reid_model.config import BackboneConfig, load_preset
from reid_model.model import build_model
from reid_model.vit_lora import create_backbone


def _tiny_backbone_cfg(path, act="gelu", **changes):
    cfg = BackboneConfig(
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        init=str(path),
        act=act,
    )
    return dataclasses.replace(cfg, **changes)


@pytest.mark.parametrize(("act", "suffix"), [("gelu", ".pt"), ("quick_gelu", ".safetensors")])
def test_open_clip_checkpoint_maps_onto_the_timm_backbone(tmp_path, act, suffix):
    clip = tiny_open_clip(seed=1, quick_gelu=act == "quick_gelu")
    path = tmp_path / f"clip{suffix}"
    state = {k: v.contiguous() for k, v in clip.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    vit = create_backbone(_tiny_backbone_cfg(path, act)).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    clip.visual.output_tokens = True
    with torch.no_grad():
        pooled, patch_tokens = clip.visual(x)
        ours = vit.forward_features(x)
    torch.testing.assert_close(ours[:, 1:], patch_tokens, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[:, 0] @ clip.visual.proj, pooled, rtol=1e-5, atol=1e-5)


def test_wrong_activation_is_not_silently_equal(tmp_path):
    clip = tiny_open_clip(seed=1, quick_gelu=True)
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    vit = create_backbone(_tiny_backbone_cfg(tmp_path / "clip.pt", "gelu")).eval()
    clip.visual.output_tokens = True
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(vit.forward_features(x)[:, 1:], clip.visual(x)[1], atol=1e-5)


def test_mismatched_architecture_names_the_keys(tmp_path):
    torch.save(tiny_open_clip().state_dict(), tmp_path / "clip.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \['blocks.2"):
        create_backbone(_tiny_backbone_cfg(tmp_path / "clip.pt", depth=3))
    with pytest.raises(CheckpointError, match="shapes"):
        create_backbone(_tiny_backbone_cfg(tmp_path / "clip.pt", embed_dim=64))


def test_other_input_size_resamples_position_embeddings(tmp_path):
    torch.save(tiny_open_clip().state_dict(), tmp_path / "clip.pt")
    vit = create_backbone(_tiny_backbone_cfg(tmp_path / "clip.pt", img_size=48))
    assert vit.forward_features(torch.zeros(1, 3, 48, 48)).shape == (1, 1 + 36, 32)


def test_unreadable_init_file_is_a_checkpoint_error(tmp_path):
    (tmp_path / "clip.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="Cannot read"):
        create_backbone(_tiny_backbone_cfg(tmp_path / "clip.pt"))
    with pytest.raises(CheckpointError, match="does not exist"):
        create_backbone(_tiny_backbone_cfg(tmp_path / "absent.pt"))


def test_mami_starts_from_the_init_file_and_checkpoints_do_not_need_it(tmp_path):
    clip = tiny_open_clip(seed=2)
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    cfg = load_preset("test")[0]
    cfg = dataclasses.replace(
        cfg, backbone=dataclasses.replace(cfg.backbone, init=str(tmp_path / "clip.pt"))
    )
    model = build_model(cfg).eval()
    torch.testing.assert_close(model.backbone.cls_token.flatten(), clip.visual.class_embedding)
    save_checkpoint(tmp_path / "ckpt", model, cfg)
    (tmp_path / "clip.pt").unlink()
    loaded, _, _ = load_checkpoint(tmp_path / "ckpt")
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x)["embedding"], model(x)["embedding"])
