"""Files per second of the metadata-only DICOM scrub (PS3.15 Basic Profile, pixels untouched).

Copies pydicom's CT_small.dcm (128x128 CT, 39 kB) N times into a temporary release, then times
read -> deidentify -> atomic write (fsync + rename) of every file, in one process and in a pool
of worker processes. Prints a markdown table (command, machine, date) and, with --results, writes it.

Usage::

    python benchmarks/dicom_scrub_speed.py [--files 400] [--workers 2] [--repeats 3]
                                           [--results PATH]

Anchor: the RSNA Anonymizer states a design goal of 10 files/s; the target here is >= 200.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from deid.dicom.options import ProfileOptions
from deid.dicom.profile import deidentify
from deid.io.atomic import atomic_write

KEY = bytes(range(32))


def scrub_one(paths: tuple[str, str]) -> int:
    """Read, de-identify and atomically write one file; return the number of actions."""
    source, target = paths
    ds = pydicom.dcmread(source)
    log = deidentify(ds, ProfileOptions(), KEY)
    with atomic_write(target) as handle:
        ds.save_as(handle, enforce_file_format=True)
    return len(log.records)


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (pool workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(jobs: list[tuple[str, str]], workers: int) -> tuple[float, float]:
    """Wall and CPU seconds to scrub all ``jobs`` with ``workers`` processes (1: in-process)."""
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    if workers == 1:
        for job in jobs:
            scrub_one(job)
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            pool.map(scrub_one, jobs, chunksize=16)
    return time.perf_counter() - start, _cpu_seconds() - cpu_start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting; best kept")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)

    source = get_testdata_file("CT_small.dcm")
    with tempfile.TemporaryDirectory() as tmp:
        release, out = Path(tmp) / "in", Path(tmp) / "out"
        release.mkdir()
        jobs = []
        for i in range(args.files):
            path = release / f"{i:05d}.dcm"
            shutil.copyfile(source, path)
            jobs.append((str(path), str(out / f"{i:05d}.dcm")))
        run(jobs[:20], 1)  # warm-up: imports, dictionaries, page cache
        rows = []
        for workers in sorted({1, args.workers}):
            load = os.getloadavg()[0]
            runs = [run(jobs, workers) for _ in range(args.repeats)]
            seconds, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
            rows.append((workers, args.files, seconds, args.files / seconds, cpu, load))

    command = "python benchmarks/dicom_scrub_speed.py " + " ".join(argv or sys.argv[1:])
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores visible"
    lines = [
        "## DICOM metadata scrub speed (CT_small.dcm, Basic Profile, pixels untouched)",
        "",
        f"- command: `{command.strip()}`",
        f"- machine: {machine}; Python {platform.python_version()}, pydicom {pydicom.__version__}",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "- anchor: RSNA Anonymizer design goal 10 files/s; target >= 200 files/s",
        "",
        f"Best of {args.repeats} runs per setting (wall and CPU separately). CPU ms/file counts",
        "user+system time of all processes, so it depends little on how busy the machine was;",
        "files/s per core = 1000 / CPU ms/file. Load = 1-minute load average when the setting",
        "started (other jobs shared the 2 cores).",
        "",
        "| worker processes | files | wall s | files/s (wall) | CPU ms/file | files/s per core | load |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {w} | {n} | {s:.2f} | {n / s:.0f} | {1000 * c / n:.1f} | {n / c:.0f} | {load:.1f} |"
        for w, n, s, _, c, load in rows
    ]
    per_core = min(n / c for _, n, _, _, c, _ in rows)
    lines += [
        "",
        f"Projection for {args.workers} otherwise idle cores: {args.workers} x {per_core:.0f} = "
        f"{args.workers * per_core:.0f} files/s (CPU-bound estimate from the slowest per-core "
        "figure; it leaves out fsync waits, which overlap across workers).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results is not None:
        args.results.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
