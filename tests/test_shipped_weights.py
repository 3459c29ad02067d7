"""The checkpoints shipped in reid_model/weights load, embed, and carry their model cards."""

from __future__ import annotations

import torch

from reid_model.checkpoint import load_checkpoint
from reid_model.evaluate import SHIPPED_DIR
from reid_model.mfm import load_mfm
from reid_model.phantoms import render
from reid_model.preprocess import preprocess


def test_every_shipped_checkpoint_has_a_model_card() -> None:
    folders = [p for p in SHIPPED_DIR.iterdir() if p.is_dir()]
    assert {"mami-demo", "phantom-mfm"} <= {p.name for p in folders}
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


def test_phantom_mfm_is_frozen() -> None:
    mfm = load_mfm("phantom-mfm")
    assert not any(p.requires_grad for p in mfm.parameters())
