"""End-to-end speed of ``deid score`` on a phantom release: images/s and where the time goes
(decode, preprocess, model, risk, ...), cold (empty embedding cache) and warm (re-score).

Usage: python benchmarks/score_e2e.py RELEASE [--truth CSV] [--checkpoint DIR] [--workers 2]
       [--device cpu] [--batch-size 32]

Make a ~1,000-image release first, e.g.
``deid synth /tmp/bench-release --patients 340 --visits 3 --split test`` (about 1 in 5 patients
is in the test split). Decode and preprocess times are summed over worker processes, so with
several workers they can exceed the wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def _row(label: str, seconds: float, n: int) -> str:
    return (
        f"| {label} | {seconds:.1f} | {n / seconds:.1f} |"
        if seconds > 0
        else f"| {label} | 0 | - |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("release", type=Path)
    parser.add_argument("--truth", type=Path)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import torch

    from deid.score import ScoreOptions, score_release

    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for label in ("cold", "warm"):
            options = ScoreOptions(
                truth=args.truth,
                checkpoint=args.checkpoint,
                out=Path(tmp) / "report",
                device=args.device,
                batch_size=args.batch_size,
                workers=args.workers,
                cache_dir=Path(tmp) / "cache",
                n_boot=200,
            )
            start = time.perf_counter()
            outcome = score_release(args.release, options)
            runs[label] = (time.perf_counter() - start, outcome.results)

    n = runs["cold"][1]["scope"]["n_records"]
    print(f"# deid score end to end: {n} images, {args.workers} workers, device {args.device}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d')}"
    )
    print("\n| run / step | seconds | images/s |\n|---|---|---|")
    for label, (wall, results) in runs.items():
        print(_row(f"{label}: total wall", wall, n))
        for step, seconds in results["timings_s"].items():
            if step != "total":
                print(_row(f"{label}: {step}", seconds, n))


if __name__ == "__main__":
    main()
