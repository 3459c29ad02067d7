"""Smoke test of benchmarks/reid_ablation.py: tiny phantom cohorts, the test preset, 1 epoch."""

from __future__ import annotations

import os

from benchmark_scripts import load_benchmark
from phantom_cohorts import phantom_spec

from reid_model.phantoms.protocol import split_of

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATASETS = "cxr_site_a,cxr_site_b"
# >= 4 training patients per dataset (P = 4 for the per-dataset models of `single`), 2 val
TRAIN = phantom_spec(DATASETS, 8, n_train=4, n_val=2)
ROWS = ("pixels", "single", "joint")


def test_spec(patients: int = 8) -> str:
    """Another phantom world than TRAIN's, with >= 3 test patients per dataset."""
    train_seed = int(TRAIN.rsplit(":", 1)[1])
    seed = next(
        s
        for s in range(train_seed + 1, 1000)
        if [split_of(i, s) for i in range(patients)].count("test") >= 3
    )
    return f"phantom:{DATASETS}:{patients}:3:{seed}"


test_spec.__test__ = False  # a helper, not a test


def load_script():
    return load_benchmark("reid_ablation")


def table(text: str, first_header: str) -> dict[str, list[str]]:
    """Rows of the markdown table whose header starts with ``first_header``, by row name."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells
    return rows


def test_ablation_prints_measured_rows_and_reuses_finished_runs(tmp_path, capsys) -> None:
    script = load_script()
    argv = [
        "--preset",
        "test",
        "--epochs",
        "1",
        "--train-data",
        TRAIN,
        "--test-data",
        test_spec(),
        "--rows",
        ",".join(ROWS),
        "--runs",
        str(tmp_path / "runs"),
        "--device",
        "cpu",
        "--quiet",
        "--append",
        str(tmp_path / "results.md"),
    ]
    assert script.main(argv) == 0
    out = capsys.readouterr().out
    results = table(out, "row | what")
    assert list(results) == list(ROWS)
    for cells in results.values():
        numbers = [float(c) for c in cells[2:]]  # rank-1 and mAP of 2 datasets, then means
        assert len(numbers) == 6
        assert all(0.0 <= n <= 1.0 for n in numbers)
    budget = table(out, "row | models")
    assert budget["single"][1] == "2" and budget["joint"][1] == "1"  # one model per dataset
    assert budget["pixels"][2] == "not trained"
    assert budget["single"][6] == budget["joint"][6]  # images seen: the same budget
    assert "Every trained row had the same budget" in out
    assert (tmp_path / "runs" / "joint" / "preset.json").is_file()
    assert (tmp_path / "runs" / "single" / "run-cxr_site_b" / "model").is_dir()
    assert (tmp_path / "results.md").read_text().strip() in out

    # a second run reuses the finished run folders instead of training again
    rows_at = argv.index("--rows") + 1
    assert script.main([*argv[:rows_at], "joint", *argv[rows_at + 1 :]]) == 0
    again = capsys.readouterr().out
    assert "(reused)" in table(again, "row | models")["joint"][8]
    assert table(again, "row | what")["joint"] == results["joint"]
