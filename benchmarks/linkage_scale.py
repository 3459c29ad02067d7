"""How linkage scoring (`deid.risk.linkage_risk`) scales with the number of released images.

Synthetic release of N unit vectors (dim 256): N/2 patients with two images each (the second a
noisy copy of the first), both under the patient's pseudonym, except for 1 % of patients whose
second image is planted under a new pseudonym. A correct search finds exactly those planted
links. Each N runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its
own; the torch thread count is fixed (default 2).

    python benchmarks/linkage_scale.py                       # N = 1e3, 1e4, 1e5 on 2 threads
    python benchmarks/linkage_scale.py --sizes 1000 20000 --out /tmp/risk.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

DIM = 256
NOISE = 0.02  # per-coordinate noise of a patient's second image: cosine ~0.95 to the first


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _release(n: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    patients = n // 2
    first = rng.normal(size=(patients, DIM)).astype(np.float32)
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    second = first + NOISE * rng.normal(size=first.shape).astype(np.float32)
    emb = np.concatenate([first, second])
    names = np.concatenate([np.arange(patients), np.arange(patients)])
    planted = rng.choice(patients, max(1, patients // 100), replace=False)
    names[patients + planted] = patients + np.arange(len(planted))  # new pseudonyms
    return emb, names.astype(str), planted, patients


def _calibrator(seed: int):
    """Fitted on a separate validation release, as a checkpoint's calibration would be."""
    import numpy as np

    from reid_model.calibration import Calibrator

    emb, _, _, patients = _release(4000, seed + 1)
    rng = np.random.default_rng(seed + 2)
    same = (emb[:patients] * emb[patients:]).sum(1)
    a, b = rng.integers(0, len(emb), (2, 20000))
    diff = (emb[a] * emb[b]).sum(1)[(a % patients) != (b % patients)]
    scores = np.r_[same, diff]
    labels = np.r_[np.ones(len(same), bool), np.zeros(len(diff), bool)]
    return Calibrator().fit(scores, labels, "isotonic")


def child(n: int, threads: int, chunk: int, seed: int) -> dict:
    """Score one release; runs in a fresh process."""
    import numpy as np
    import torch

    from deid.risk import linkage_risk

    torch.set_num_threads(threads)
    emb, names, planted, patients = _release(n, seed)
    cal = _calibrator(seed)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start, cpu_start = time.perf_counter(), time.process_time()
    out = linkage_risk(emb, cal, names.tolist(), threshold=0.5, chunk=chunk)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    link = out["per_record"]["link"]
    found = int(np.sum(link[planted] == patients + planted))
    s = out["summary"]
    return {
        "n": n,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load": os.getloadavg()[0],
        "peak_mb": peak,
        "added_mb": max(0.0, peak - before),
        "planted": len(planted),
        "found": found,
        "at_risk": s["records_at_risk"],
        "estimated": s["estimated_patients"],
        "claimed": s["claimed_patients"],
    }


def _ratio(a: dict, b: dict) -> float:
    return b["cpu_seconds"] / max(a["cpu_seconds"], 1e-9)


def table(rows: list[dict], argv: list[str], threads: int) -> str:
    lines = [
        "# Linkage risk: scaling with the number of images",
        "",
        f"- command: `python {' '.join(argv)}`",
        f"- machine: {_cpu_name()}, {os.cpu_count()} logical CPUs visible, torch threads "
        f"{threads}; python {platform.python_version()}",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- data: N unit vectors of dim {DIM}, N/2 patients x 2 images, 1 % of patients' second "
        "image planted under a new pseudonym; exact blockwise search (`deid.risk.linkage_risk`)",
        "- CPU: process CPU time of the scoring (user + system, all threads); on a shared "
        "machine wall time grows with the load, and CPU / threads estimates the wall time on an "
        "idle machine (exact when every thread stays busy)",
        "- peak: resident set high-water mark of the scoring process; added: peak minus the "
        "high-water mark before scoring (the embeddings themselves are N x 1 KiB)",
        "",
        "| N | wall (s) | CPU (s) | load avg | peak RSS (MB) | added by scoring (MB) | "
        "planted links found | records at risk | estimated / claimed patients |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['load']:.1f} | "
            f"{r['peak_mb']:.0f} | {r['added_mb']:.0f} | "
            f"{r['found']}/{r['planted']} | {r['at_risk']:,} | "
            f"{r['estimated']:,} / {r['claimed']:,} |"
        )
    growth = [
        f"N {a['n']:,} -> {b['n']:,}: CPU time x{_ratio(a, b):.1f} "
        f"(exponent {math.log(_ratio(a, b)) / math.log(b['n'] / a['n']):.2f})"
        for a, b in zip(rows, rows[1:], strict=False)
    ]
    big = max(rows, key=lambda r: r["n"])
    idle = big["cpu_seconds"] / threads
    lines += [
        "",
        f"Target at N = {big['n']:,} on {threads} threads: < 60 s and < 2 GB. Peak memory "
        f"{big['peak_mb']:.0f} MB ({'met' if big['peak_mb'] < 2048 else 'missed'}). Wall time "
        f"{big['seconds']:.0f} s at load average {big['load']:.1f} on this shared machine; "
        f"CPU / threads {idle:.0f} s ({'met' if idle < 60 else 'missed'} on an idle machine by "
        "that estimate).",
    ]
    if growth:
        lines += [
            "",
            "Growth: " + "; ".join(growth) + ". Time is O(N^2 D); memory O(chunk^2 + N).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.threads, args.chunk, args.seed)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    rows = []
    for n in args.sizes:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(n),
            "--threads",
            str(args.threads),
            "--chunk",
            str(args.chunk),
            "--seed",
            str(args.seed),
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"N={n}: {r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} s CPU, "
            f"peak {r['peak_mb']:.0f} MB",
            flush=True,
        )
    text = table(rows, ["benchmarks/linkage_scale.py", *sys.argv[1:]], args.threads)
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
