"""`deid score` with truth and `deid evaluate` report the same rank-1 and mAP on the same images."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_score import make_checkpoint

from deid.score import ScoreOptions, score_release
from deid.synth import truth_path, write_release
from reid_model.evaluate import evaluate_checkpoint
from reid_model.phantoms import generate
from reid_model.phantoms.protocol import split_of

DATASETS = ["cxr_site_a", "fundus"]


def test_score_and_evaluate_agree_per_dataset(tmp_path: Path) -> None:
    test_patients = [i for i in range(200) if split_of(i, 0) == "test"][:3]
    release = tmp_path / "release"
    images = generate(DATASETS, test_patients[-1] + 1, 3, seed=0, splits=["test"])
    write_release(release, images, "dicom", seed=0, progress=False)
    checkpoint = make_checkpoint(tmp_path / "ckpt")

    evaluated = evaluate_checkpoint(checkpoint, str(release), n_boot=1, device="cpu")
    scored = score_release(
        release,
        ScoreOptions(
            truth=truth_path(release),
            checkpoint=checkpoint,
            out=tmp_path / "report",
            device="cpu",
            workers=0,
            use_cache=False,
            n_boot=0,
        ),
    ).results["truth"]["groups"]

    for dataset in DATASETS:
        ours, theirs = scored[dataset], evaluated["datasets"][dataset]
        assert ours["n_queries"] == theirs["n_queries"] == len(test_patients)
        assert ours["rank1"] == pytest.approx(theirs["rank1"])
        assert ours["mAP"] == pytest.approx(theirs["mAP"], abs=1e-3)
