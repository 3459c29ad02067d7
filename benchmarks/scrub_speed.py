"""Files per second of ``deid scrub`` (``scrub_release``), metadata only, serial vs workers.

Copies pydicom's CT_small.dcm (128x128 CT, 39 kB) N times into a temporary release, each copy
with its own patient, study, series and instance UIDs (so no two copies form a volume), or with
``--series K`` as series of K slices (scrubbed as volumes), then times the whole
``scrub_release`` call: discovery, quarantine check, PS3.15 Basic Profile, keyed output names,
atomic writes, input and output hashes, journal and manifest. Each setting runs ``--repeats``
times, interleaved, into a fresh output folder; the median and the best run are reported (on a
virtual machine whose host is busy, rates drift from one minute to the next: the best run is
the closest to what the software does on free cores, the median to what a user on a shared host
sees). Files per CPU-second (this process plus its workers) says what free cores would deliver
on a shared machine, where wall-clock rates depend on the other load.

Usage::

    python benchmarks/scrub_speed.py [--files 400] [--workers 2] [--repeats 3] [--series 1]
                                     [--results PATH]

Anchor: the RSNA Anonymizer states a design goal of 10 files/s; issue 5's target is >= 200
files/s on 2 cores for CT_small-sized files.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pydicom  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

from deid.scrub import scrub_release  # noqa: E402

KEY_HEX = "42" * 32


def make_release(root: Path, files: int, per_series: int = 1) -> None:
    """``files`` copies of CT_small with distinct instance UIDs: each its own patient and series
    (``per_series`` 1), or ``per_series`` slices (positions 1 mm apart) per patient's series."""
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for index in range(files):
        ds = source.copy()
        group = index // per_series
        ds.PatientID = f"BENCH{group:05d}"
        ds.PatientName = f"Bench^Patient{group}"
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.9.7.1.{group}"
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.9.7.2.{group}"
        if per_series > 1:
            ds.ImagePositionPatient = [0.0, 0.0, float(index % per_series)]
            ds.InstanceNumber = index % per_series + 1
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7.3.{index}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        target = root / f"patient{index % 50:02d}" / f"img{index:05d}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target)


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_once(release: Path, out: Path, key: Path, workers: int) -> tuple[float, float, float]:
    """Wall seconds of one ``scrub_release`` call, of its scrub phase alone, and CPU seconds."""
    shutil.rmtree(out, ignore_errors=True)
    cpu = cpu_seconds()
    start = time.perf_counter()
    summary = scrub_release(release, out, key_file=key, workers=workers)
    total = time.perf_counter() - start
    if summary.counts != {"written": len(summary.entries)}:
        raise SystemExit(f"unexpected outcome: {summary.counts}")
    return total, summary.seconds, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--series", type=int, default=1, help="files per series (1: every file its own patient)"
    )
    parser.add_argument("--results", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    settings = [1, args.workers]
    with tempfile.TemporaryDirectory(prefix="scrub-speed-") as tmp:
        root = Path(tmp)
        make_release(root / "release", args.files, args.series)
        key = root / "bench.key"
        key.write_text(KEY_HEX + "\n")
        key.chmod(0o600)
        times: dict[int, list[tuple[float, float, float]]] = {w: [] for w in settings}
        for _ in range(args.repeats):
            for workers in settings:
                times[workers].append(time_once(root / "release", root / "out", key, workers))
    lines = [
        "| setting | files | end-to-end files/s (median) | end-to-end files/s (best) "
        "| scrub-phase files/s | files per CPU-s | runs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for workers in settings:
        total, phase, cpu = (statistics.median(run[i] for run in times[workers]) for i in range(3))
        best = min(run[0] for run in times[workers])
        name = "serial" if workers == 1 else f"--workers {workers}"
        lines.append(
            f"| {name} | {args.files} | {args.files / total:.0f} | {args.files / best:.0f} | "
            f"{args.files / phase:.0f} | {args.files / cpu:.0f} | {args.repeats} |"
        )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines += [
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- machine: {platform.platform()}, {platform.machine()}, {cores} usable cores "
        f"(of {os.cpu_count()}); pydicom {pydicom.__version__}; load average at end: "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
    ]
    table = "\n".join(lines)
    print(table)
    if args.results is not None:
        args.results.write_text(table + "\n")


if __name__ == "__main__":
    main()
