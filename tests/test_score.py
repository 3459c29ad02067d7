"""``deid score`` parts on a tiny hand-made release and the tiny ``test``-preset model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deid.errors import InputError
from deid.io import discover
from deid.score.accuracy import query_mask, truth_metrics
from deid.score.cache import EmbeddingCache, content_key
from deid.score.embed import embed_units
from deid.score.truth import Label, build_units, read_truth

N_PATIENTS, N_VISITS = 3, 2


def _anatomy(patient: int, rng: np.random.Generator, size: int = 40) -> np.ndarray:
    """A patient-specific blob pattern plus visit noise, as 8-bit grey."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.random.default_rng(100 + patient).uniform(0.2, 0.8, (3, 2))
    image = sum(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.01) for cx, cy in base)
    image = image + rng.normal(0, 0.05, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_release(root: Path, *, slices: bool = False) -> Path:
    """PNG release of N_PATIENTS x N_VISITS images (or 2-slice volumes) and its truth CSV."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    rows = []
    for p in range(N_PATIENTS):
        for v in range(N_VISITS):
            for s in range(2 if slices else 1):
                name = f"img_{p}{v}{s}.png"
                Image.fromarray(_anatomy(p, rng)).save(root / name)
                rows.append(
                    {
                        "file": name,
                        "patient": f"p{p}",
                        "dataset": "toy",
                        "visit": v,
                        "split": "test",
                        "slice": s,
                    }
                )
    truth = root.with_name(root.name + ".truth.csv")
    with truth.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return truth


def make_checkpoint(folder: Path) -> Path:
    """Save the random-weight ``test``-preset model with a toy calibration into ``folder``."""
    from reid_model.calibration import Calibrator
    from reid_model.checkpoint import save_checkpoint
    from reid_model.config import load_preset
    from reid_model.model import build_model

    cfg, _ = load_preset("test")
    torch.manual_seed(0)
    model = build_model(cfg, with_mfm=False)
    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0.8, 0.1, 50), rng.normal(0.2, 0.2, 200)]
    same = np.r_[np.ones(50, bool), np.zeros(200, bool)]
    save_checkpoint(
        folder,
        model,
        cfg,
        calibration=Calibrator().fit(scores, same).to_dict(),
        extra={"preset": "test", "trained_on": "no data (random weights)"},
    )
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "test-ckpt")


def test_truth_groups_slices_into_volumes_in_slice_order(tmp_path: Path) -> None:
    truth = read_truth(write_release(tmp_path / "rel", slices=True))
    found = discover(tmp_path / "rel")
    units, labels = build_units(list(reversed(found.items)), tmp_path / "rel", truth)
    assert len(units) == N_PATIENTS * N_VISITS
    assert all(len(u.items) == 2 for u in units)
    assert all(u.items[0].key.endswith("0.png") and u.items[1].key.endswith("1.png") for u in units)
    assert {(lab.patient, lab.visit) for lab in labels} == {
        (f"p{p}", v) for p in range(N_PATIENTS) for v in range(N_VISITS)
    }


def test_truth_naming_unknown_files_is_an_input_error(tmp_path: Path) -> None:
    truth_path = write_release(tmp_path / "rel")
    with truth_path.open("a", encoding="utf-8") as handle:
        handle.write("ghost.png,p9,toy,0,test,0\n")
    with pytest.raises(InputError, match=r"names 1 file\(s\) that are not in the release.*ghost"):
        build_units(discover(tmp_path / "rel").items, tmp_path / "rel", read_truth(truth_path))


def test_truth_without_required_columns_says_which(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("file,patient\na.png,p1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"lacks the column\(s\) \['dataset', 'visit'\]"):
        read_truth(bad)


def test_cache_round_trips_and_ignores_damaged_entries(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache", "c" * 64)
    vector = np.arange(4, dtype=np.float32)
    cache.put("ab" * 32, vector, "CT")
    got = cache.get("ab" * 32)
    assert got is not None and np.array_equal(got[0], vector) and got[1] == "CT"
    assert cache.get("cd" * 32) is None
    next(cache.folder.rglob("*.npz")).write_bytes(b"garbage")
    assert cache.get("ab" * 32) is None


def test_content_key_follows_bytes_not_names(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x")
    (tmp_path / "b").write_bytes(b"x")
    (tmp_path / "c").write_bytes(b"y")
    assert content_key([tmp_path / "a"]) == content_key([tmp_path / "b"])
    assert content_key([tmp_path / "a"]) != content_key([tmp_path / "c"])
    assert content_key([tmp_path / "a", tmp_path / "c"]) != content_key(
        [tmp_path / "c", tmp_path / "a"]
    )


def test_embedding_reuses_the_cache_and_gives_the_same_vectors(
    tmp_path: Path, checkpoint: Path
) -> None:
    from reid_model.checkpoint import load_checkpoint

    write_release(tmp_path / "rel")
    (tmp_path / "rel" / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    model, cfg, _ = load_checkpoint(checkpoint)
    units, _ = build_units(discover(tmp_path / "rel").items, tmp_path / "rel", None)
    cache = EmbeddingCache(tmp_path / "cache", "d" * 64)
    first = embed_units(units, model, cfg.preprocess, cache=cache, device="cpu", batch_size=4)
    second = embed_units(units, model, cfg.preprocess, cache=cache, device="cpu", batch_size=4)
    assert first.cache_hits == 0 and second.cache_hits == N_PATIENTS * N_VISITS
    assert [k for k, _ in first.skipped] == ["junk.png"]
    assert first.embeddings.shape == (N_PATIENTS * N_VISITS, cfg.head.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(first.embeddings, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    assert second.modalities == first.modalities == ["OT"] * (N_PATIENTS * N_VISITS)


def test_query_mask_follows_the_evaluation_protocol_per_dataset_and_patient() -> None:
    from reid_model.phantoms.protocol import query_gallery

    visits = [("p1", 0), ("p1", 1), ("p1", 2), ("p2", 0), ("p2", 1), ("p3", 4)]
    labels = [Label(patient, "cxr", visit) for patient, visit in visits]
    labels.append(Label("p1", "cxr", 0))  # a second view of p1's first visit
    mask = query_mask(labels)
    expected = set(query_gallery(visits).query)
    assert mask[: len(visits)].tolist() == [i in expected for i in range(len(visits))]
    assert mask[-1] == mask[0]  # every record of the query visit is a query
    assert not mask[5]  # p3 has one visit: nothing to match, so it stays in the gallery
    for patient in ("p1", "p2"):
        chosen = {
            lab.visit for lab, q in zip(labels, mask, strict=True) if q and lab.patient == patient
        }
        assert len(chosen) == 1


def test_truth_metrics_are_perfect_for_separable_embeddings() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:4]
    labels = [Label(f"p{p}", "ds" if p < 2 else "other", v) for p in range(4) for v in range(3)]
    emb = np.stack([centres[int(lab.patient[1])] + rng.normal(0, 0.01, 8) for lab in labels])
    emb = np.vstack([emb, rng.normal(0, 1, (1, 8))])  # one record the truth does not name
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    section = truth_metrics(emb.astype(np.float32), [*labels, None], source="t", n_boot=20, rng=rng)
    assert set(section["groups"]) == {"all", "ds", "other"} and section["n_matched"] == 12
    overall = section["groups"]["all"]
    assert overall["rank1"] == 1.0 and overall["n_patients"] == 4
    assert overall["auc"] == pytest.approx(1.0)
    assert overall["cmc"][0] == 1.0 and overall["ci"]["rank1"] == {"low": 1.0, "high": 1.0}
    assert sum(section["similarity_same"]["counts"]) == 4 * 2  # each query vs its 2 other visits


def test_score_refuses_to_overwrite_a_scrub_report(tmp_path: Path) -> None:
    from deid.errors import OutputError
    from deid.score import ScoreOptions, score_release

    safe = tmp_path / "safe"
    safe.mkdir()
    (safe / "a.png").write_bytes(b"not scored: the folder check comes first")
    report = tmp_path / "safe-report"  # the default folder of both reports
    report.mkdir()
    (report / "report.json").write_text('{"report": "scrub"}')
    with pytest.raises(OutputError, match="scrub report"):
        score_release(safe, ScoreOptions())
    assert (report / "report.json").read_text() == '{"report": "scrub"}'
