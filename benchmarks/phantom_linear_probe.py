"""Is phantom identity learnable? A linear probe trained on the train split.

PCA + linear discriminant analysis are fitted on 64x64 thumbnails of train-split patients
(several visits each) and test-split queries are ranked against the gallery in the LDA space,
with the protocol of ``phantom_difficulty.py``. A linear model cannot undo pose, so its rank-1
is a floor of what a learned re-identifier can reach, not an estimate of it; the point is that
it rises far above the raw-pixel baseline, i.e. the identity signal is there and can be learned.

Usage: python benchmarks/phantom_linear_probe.py [--train-patients 200] [--train-visits 5]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np
from phantom_difficulty import rank_metrics, thumbnail  # same folder as this script
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from reid_model.phantoms.generator import query_gallery, render, split_of
from reid_model.phantoms.types import DATASETS


def patients_of(split: str, count: int, seed: int) -> list[int]:
    found: list[int] = []
    index = 0
    while len(found) < count:
        if split_of(index, seed) == split:
            found.append(index)
        index += 1
    return found


def probe(dataset: str, args: argparse.Namespace) -> dict[str, float]:
    train = patients_of("train", args.train_patients, args.seed)
    x_train = np.stack(
        [
            thumbnail(render(dataset, p, v, args.seed), 64)
            for p in train
            for v in range(args.train_visits)
        ]
    )
    y_train = np.repeat(train, args.train_visits)
    pca = PCA(n_components=min(150, len(x_train) - 1), random_state=0).fit(x_train)
    lda = LinearDiscriminantAnalysis().fit(pca.transform(x_train), y_train)

    test_images = [
        render(dataset, p, v, args.seed)
        for p in patients_of("test", args.test_patients, args.seed)
        for v in range(args.test_visits)
    ]
    ids = np.array([im.patient for im in test_images])
    qg = query_gallery(test_images)
    q, g = np.array(qg.query), np.array(qg.gallery)
    out = {}
    raw = np.stack([thumbnail(im, 64) for im in test_images])
    probed = lda.transform(pca.transform(raw))
    probed /= np.linalg.norm(probed, axis=1, keepdims=True) + 1e-12
    for name, feats in (("raw", raw), ("linear", probed)):
        rank1, _, m_ap = rank_metrics(feats[q] @ feats[g].T, ids[q], ids[g])
        out[f"{name}_rank1"], out[f"{name}_mAP"] = rank1, m_ap
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-patients", type=int, default=200)
    parser.add_argument("--train-visits", type=int, default=5)
    parser.add_argument("--test-patients", type=int, default=100)
    parser.add_argument("--test-visits", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    args = parser.parse_args()

    print("| dataset | raw 64x64 rank-1 | raw mAP | PCA+LDA rank-1 | PCA+LDA mAP | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for dataset in args.datasets:
        start = time.perf_counter()
        r = probe(dataset, args)
        print(
            f"| {dataset} | {r['raw_rank1']:.1%} | {r['raw_mAP']:.3f} | {r['linear_rank1']:.1%} "
            f"| {r['linear_mAP']:.3f} | {time.perf_counter() - start:.0f} |",
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
