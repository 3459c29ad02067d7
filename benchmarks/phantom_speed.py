"""Throughput of the phantom generator on one CPU core (images/s per dataset).

Patients are rendered visit after visit as ``generate`` does, so the per-patient anatomy cache
is used as in training-data generation; the first visit of each patient pays for its anatomy.
Both wall-clock and process CPU time are reported: on a shared machine the CPU-time rate is the
one that says what one free core delivers.

Usage: python benchmarks/phantom_speed.py [--patients 10] [--visits 3] [--seed 0]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/scipy start their thread pools

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from reid_model.phantoms.generator import generate  # noqa: E402
from reid_model.phantoms.types import DATASETS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--visits", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1000, help="fresh seed: no warm caches")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    next(iter(generate(["fundus"], 1, 1, seed=args.seed + 1)))  # import-time and font warm-up
    print(
        "| dataset | images | images/s (CPU time) | ms/image (CPU) | images/s (wall) | slices/image |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for dataset in args.datasets:
        wall, cpu = time.perf_counter(), time.process_time()
        slices = 0
        n = 0
        for image in generate([dataset], args.patients, args.visits, seed=args.seed):
            n += 1
            slices += image.pixels.shape[0] if image.is_volume else 1
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        row = f"| {dataset} | {n} | {n / cpu:.1f} | {1000 * cpu / n:.0f} | {n / wall:.1f} |"
        print(f"{row} {slices / n:.1f} |", flush=True)
    print()
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, pinned to 1 core, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    )
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}")


if __name__ == "__main__":
    main()
