import dataclasses

import pytest
import torch

from deid.errors import InputError
from reid_model.config import load_preset
from reid_model.model import MaMI, build_model


@pytest.fixture(scope="module")
def cfg():
    return load_preset("test")[0]


def _model(cfg, num_classes=0, seed=0, **head):
    torch.manual_seed(seed)
    if head:
        cfg = dataclasses.replace(cfg, head=dataclasses.replace(cfg.head, **head))
    return build_model(cfg, num_classes=num_classes)


def _images(n, seed=0, size=32):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _randomise_b_generators(model):
    """Give the (zero-initialised) B read-outs weights, as training would."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for pnet in (model.compa.att_pnet, model.compa.ffn_pnet):
            for layer in pnet.to_b.values():
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.2)


def test_image_outputs_have_the_documented_shapes_and_are_finite(cfg):
    model = _model(cfg, num_classes=5)
    out = model(_images(3))
    n, d, e = cfg.head.num_queries, cfg.backbone.embed_dim, cfg.head.embed_dim
    tokens = cfg.backbone.grid_size**2
    assert out["embedding"].shape == (3, e) and out["feat"].shape == (3, e)
    assert out["logits"].shape == (3, 5)
    assert out["parts"].shape == (3, n, d)
    assert out["attn"].shape == (3, n, tokens)
    assert out["modality_probs"].shape == (3, cfg.compa.num_bases)
    assert "parts_proj" not in out  # no MFM attached
    for value in out.values():
        assert torch.isfinite(value).all()
    torch.testing.assert_close(out["attn"].sum(-1), torch.ones(3, n))
    torch.testing.assert_close(out["modality_probs"].sum(-1), torch.ones(3))


def test_wrong_input_shapes_are_rejected(cfg):
    model = _model(cfg)
    with pytest.raises(InputError, match="3 x 32 x 32"):
        model(torch.zeros(2, 3, 16, 16))
    with pytest.raises(InputError, match="volumes"):
        model(torch.zeros(3, 32, 32))


def test_volume_mean_pooling_is_the_mean_of_slice_features(cfg):
    model = _model(cfg).eval()
    vols = torch.stack([_images(4, seed=1), _images(4, seed=2)])  # (2, 4, 3, 32, 32)
    out = model(vols)
    assert out["embedding"].shape == (2, cfg.head.embed_dim)
    assert out["attn"].shape == (2, 4, cfg.head.num_queries, cfg.backbone.grid_size**2)
    slices = model(vols.flatten(0, 1))
    torch.testing.assert_close(out["feat"], slices["feat"].view(2, 4, -1).mean(1))
    torch.testing.assert_close(
        out["parts"], slices["parts"].view(2, 4, *out["parts"].shape[1:]).mean(1)
    )


def test_slice_mask_excludes_padding_slices(cfg):
    for pooling in ("mean", "attention"):
        model = _model(cfg, volume_pooling=pooling).eval()
        vol = _images(3, seed=3).unsqueeze(0)
        padded = torch.cat([vol, 5 * _images(2, seed=4).unsqueeze(0)], dim=1)
        mask = torch.tensor([[True, True, True, False, False]])
        torch.testing.assert_close(model(padded, mask)["embedding"], model(vol)["embedding"])
        assert not torch.allclose(model(padded)["embedding"], model(vol)["embedding"])
        with pytest.raises(InputError, match="slice_mask"):
            model(padded, torch.ones(1, 3, dtype=torch.bool))


def test_attention_volume_pooling_weights_slices_unequally(cfg):
    model = _model(cfg, volume_pooling="attention").eval()
    assert model.slice_attention is not None
    vols = _images(4, seed=5).unsqueeze(0)
    out = model(vols)
    mean_feat = model(vols.flatten(0, 1))["feat"].mean(0, keepdim=True)
    assert out["embedding"].shape == (1, cfg.head.embed_dim)
    assert not torch.allclose(out["feat"], mean_feat)


def test_zero_delta_at_init_equals_the_plain_vit(cfg):
    model = _model(cfg).eval()
    x = _images(2)
    tokens, compa = model.forward_trunk(x)
    assert compa is not None
    for _, b in compa.factors.values():
        assert torch.count_nonzero(b) == 0
    plain = model.backbone.forward_features(x)  # no factors installed: plain timm ViT
    torch.testing.assert_close(tokens, plain, rtol=0, atol=0)
    _randomise_b_generators(model)
    assert not torch.allclose(model.forward_trunk(x)[0], plain, atol=1e-4)


def test_deltas_are_per_image_and_batched(cfg):
    model = _model(cfg).eval()
    _randomise_b_generators(model)
    x = torch.cat([_images(1, seed=10), 3 * _images(1, seed=11) + 1])
    _, compa = model.forward_trunk(x)
    a, b = compa.factors["qkv"]
    delta = b[0] @ a[0]  # (2, Dout, Din) delta of block 0
    assert not torch.allclose(delta[0], delta[1], atol=1e-6)
    together = model(x)
    for i in range(2):
        alone = model(x[i : i + 1])
        torch.testing.assert_close(
            together["embedding"][i : i + 1], alone["embedding"], rtol=1e-4, atol=1e-5
        )
    # the factors are uninstalled after the pass
    assert all(layer.factors is None for layers in model._lora for layer in layers.values())


def test_two_training_steps_reach_both_factor_generators(cfg):
    model = _model(cfg, num_classes=4).train()
    pnet = model.compa.att_pnet
    a_before = pnet.to_a["qkv"].weight.detach().clone()
    b_before = pnet.to_b["qkv"].weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = _images(4, seed=3), torch.tensor([0, 1, 2, 3])
    grads = []
    for _ in range(2):
        opt.zero_grad()
        out = model(x)
        torch.nn.functional.cross_entropy(out["logits"], y).backward()
        grads.append(
            (
                pnet.to_a["qkv"].weight.grad.abs().sum().item(),
                pnet.to_b["qkv"].weight.grad.abs().sum().item(),
            )
        )
        opt.step()
    assert grads[0][1] > 0  # B gets gradient at once because A != 0
    assert grads[1][0] > 0  # A gets gradient once B moved
    assert not torch.equal(pnet.to_a["qkv"].weight, a_before)
    assert not torch.equal(pnet.to_b["qkv"].weight, b_before)
    assert not torch.equal(
        model.compa.ffn_pnet.to_b["fc1"].weight,
        torch.zeros_like(model.compa.ffn_pnet.to_b["fc1"].weight),
    )


def test_embed_is_unit_norm_without_grad_and_keeps_the_mode(cfg):
    model = _model(cfg).train()
    emb = model.embed(_images(3))
    assert emb.shape == (3, cfg.head.embed_dim) and not emb.requires_grad
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    assert model.training
    torch.testing.assert_close(model.embed(_images(3)), emb)  # eval mode: deterministic


def test_compa_disabled_gives_a_plain_vit_with_query_pooling(cfg):
    off = dataclasses.replace(cfg, compa=dataclasses.replace(cfg.compa, enabled=False))
    model = MaMI(off, num_classes=3)
    assert model.compa is None and not model._lora
    out = model(_images(2))
    assert "modality_probs" not in out and out["logits"].shape == (2, 3)


def test_fc2_target_is_supported(cfg):
    with_fc2 = dataclasses.replace(
        cfg, compa=dataclasses.replace(cfg.compa, lora_targets=("qkv", "fc1", "fc2"))
    )
    model = MaMI(with_fc2)
    _, compa = model.forward_trunk(_images(1))
    mlp_hidden = int(cfg.backbone.embed_dim * cfg.backbone.mlp_ratio)
    assert compa.factors["fc2"][1].shape[-2:] == (cfg.backbone.embed_dim, cfg.compa.lora_rank)
    assert compa.factors["fc2"][0].shape[-1] == mlp_hidden


def test_conv_stem_keeps_the_token_grid_and_trains(cfg):
    conv = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, stem="conv"))
    model = MaMI(conv, num_classes=3)
    stem = model.backbone.patch_embed
    assert any(isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2) for m in stem.modules())
    tokens = stem(_images(2))
    assert tokens.shape == (2, conv.backbone.grid_size**2, conv.backbone.embed_dim)
    out = model(_images(2))
    out["logits"].sum().backward()
    assert all(p.grad is not None for p in stem.parameters())


def test_conv_stem_rejects_clip_weights_and_odd_patch_sizes(cfg):
    with pytest.raises(InputError, match="power-of-two"):
        dataclasses.replace(cfg.backbone, stem="conv", patch_size=6, img_size=36)
    with pytest.raises(InputError, match="patch stem"):
        dataclasses.replace(cfg.backbone, stem="conv", init="/weights/clip.safetensors")
