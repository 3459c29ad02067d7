"""Difficulty of the phantom re-identification task for a non-learned baseline.

Each image becomes a 32x32 thumbnail (middle slice for volumes, RGB kept for fundus), normalised
to zero mean and unit norm; queries (one visit per test-split patient) are ranked against the
gallery (their other visits and everyone else's) by cosine similarity. A low rank-1 shows that
identity is not readable from raw pixel layout, so a re-identifier has to learn anatomy.

Usage: python benchmarks/phantom_difficulty.py [--patients 100] [--visits 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np
from PIL import Image

from reid_model.phantoms.generator import query_gallery, render, split_of
from reid_model.phantoms.types import DATASETS, PhantomImage


def thumbnail(image: PhantomImage, side: int = 32) -> np.ndarray:
    """Zero-mean, unit-norm vector of the area-downsampled image (middle slice of a volume)."""
    pixels = image.pixels
    if image.is_volume:
        pixels = pixels[pixels.shape[0] // 2]
    channels = pixels[..., None] if pixels.ndim == 2 else pixels
    small = np.stack(
        [
            np.asarray(
                Image.fromarray(channels[..., c].astype(np.float32), mode="F").resize(
                    (side, side), Image.Resampling.BOX
                )
            )
            for c in range(channels.shape[-1])
        ],
        axis=-1,
    ).ravel()
    small = small - small.mean()
    return small / (np.linalg.norm(small) + 1e-12)


def rank_metrics(
    sim: np.ndarray, q_ids: np.ndarray, g_ids: np.ndarray
) -> tuple[float, float, float]:
    """Rank-1, rank-5 and mAP of queries against a gallery from a similarity matrix."""
    order = np.argsort(-sim, axis=1, kind="stable")
    hits = g_ids[order] == q_ids[:, None]
    rank1 = float(hits[:, 0].mean())
    rank5 = float(hits[:, :5].any(axis=1).mean())
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    ap = (precision * hits).sum(axis=1) / np.maximum(hits.sum(axis=1), 1)
    return rank1, rank5, float(ap.mean())


def evaluate(dataset: str, n_patients: int, n_visits: int, seed: int) -> dict[str, float]:
    patients = []
    index = 0
    while len(patients) < n_patients:
        if split_of(index, seed) == "test":
            patients.append(index)
        index += 1
    start = time.perf_counter()
    images = [render(dataset, p, v, seed) for p in patients for v in range(n_visits)]
    seconds = time.perf_counter() - start
    feats = np.stack([thumbnail(im) for im in images])
    ids = np.array([im.patient for im in images])
    qg = query_gallery(images)
    q, g = np.array(qg.query), np.array(qg.gallery)
    rank1, rank5, m_ap = rank_metrics(feats[q] @ feats[g].T, ids[q], ids[g])
    return {
        "rank1": rank1,
        "rank5": rank5,
        "mAP": m_ap,
        "chance": (n_visits - 1) / len(g),
        "queries": len(q),
        "gallery": len(g),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100, help="test-split patients per dataset")
    parser.add_argument("--visits", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    args = parser.parse_args()

    print("| dataset | queries | gallery | rank-1 | rank-5 | mAP | chance rank-1 | render s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for dataset in args.datasets:
        r = evaluate(dataset, args.patients, args.visits, args.seed)
        print(
            f"| {dataset} | {r['queries']} | {r['gallery']} | {r['rank1']:.1%} | {r['rank5']:.1%} "
            f"| {r['mAP']:.3f} | {r['chance']:.1%} | {r['seconds']:.0f} |",
            flush=True,
        )
    print()
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"
    )
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}")


if __name__ == "__main__":
    main()
