"""The checkpoints shipped in reid_model/weights load, embed, and carry their model cards."""

from __future__ import annotations

import torch

from reid_model.checkpoint import load_checkpoint
from reid_model.evaluate import SHIPPED_DIR
from reid_model.mfm import load_mfm
from reid_model.phantoms import render
from reid_model.preprocess import preprocess
from reid_model.train_mfm import load_diagnosis


def test_every_shipped_checkpoint_has_a_model_card() -> None:
    folders = [p for p in SHIPPED_DIR.iterdir() if p.is_dir()]
    assert {"mami-demo", "attacker-demo", "phantom-mfm", "phantom-diagnosis"} <= {
        p.name for p in folders
    }
    for folder in folders:
        card = (folder / "MODEL_CARD.md").read_text()
        assert "command" in card and "hardware" in card, folder.name


def test_mami_demo_embeds_and_is_calibrated() -> None:
    model, cfg, meta = load_checkpoint(SHIPPED_DIR / "mami-demo")
    assert meta["calibration"] is not None  # deid score needs P(same patient)
    image = render("cxr_site_a", 0, 0)
    x = preprocess(image.pixels.astype("float32"), "CR", cfg.preprocess)[None]
    embedding = model.embed(x)
    assert embedding.shape == (1, cfg.head.embed_dim)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(1), atol=1e-4)


def test_attacker_is_independent_of_mami_demo() -> None:
    attacker, cfg, meta = load_checkpoint(SHIPPED_DIR / "attacker-demo")
    _, mami_cfg, mami_meta = load_checkpoint(SHIPPED_DIR / "mami-demo")
    assert cfg.backbone != mami_cfg.backbone  # another size
    assert meta["extra"]["seed"] != mami_meta["extra"]["seed"]
    image = render("fundus", 0, 0)
    x = preprocess(image.pixels.astype("float32"), "OP", cfg.preprocess)[None]
    assert attacker.embed(x).shape == (1, cfg.head.embed_dim)


def test_phantom_diagnosis_scores_every_finding() -> None:
    model, preprocess_cfg, meta = load_diagnosis(SHIPPED_DIR / "phantom-diagnosis")
    image = render("cxr_site_a", 0, 0)
    x = preprocess(image.pixels.astype("float32"), "CR", preprocess_cfg)[None]
    assert model(x).shape == (1, len(model.findings))
    assert set(image.findings) <= set(model.findings)


def test_phantom_mfm_is_frozen() -> None:
    mfm = load_mfm("phantom-mfm")
    assert not any(p.requires_grad for p in mfm.parameters())
