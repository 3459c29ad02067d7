"""Embedding throughput of MaMI versus a plain timm ViT of the same size, in the same run.

Both models run in eval mode under ``torch.inference_mode`` on random preprocessed images; the
timings alternate between the two models and the median of the repeats is reported, so machine
load drifts hit both alike. On CUDA the default is bfloat16 autocast.

    python benchmarks/embed_speed.py --preset demo --device cpu
    python benchmarks/embed_speed.py --preset paper --device cuda --batch 256
    ... --append /tmp/embed_speed.md     # also append a markdown record
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_report import command_line, machine_name, publish, sync
from torch import Tensor

from reid_model.config import load_preset
from reid_model.model import MaMI
from reid_model.vit_lora import create_backbone


def time_per_batch(fn: Callable[[], Tensor], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def measure(
    models: dict[str, Callable[[Tensor], Tensor]],
    x: Tensor,
    device: torch.device,
    warmup: int,
    repeats: int,
    bf16: bool,
) -> dict[str, float]:
    """Images/s of each model: median over ``repeats`` interleaved timed batches."""
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode(), autocast:
        for _ in range(warmup):
            for fn in models.values():
                fn(x)
        for _ in range(repeats):
            for name, fn in models.items():
                times[name].append(time_per_batch(lambda fn=fn: fn(x), device))
    return {name: x.shape[0] / statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=None, help="default: 32 on CPU, 256 on CUDA")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-bf16", action="store_true", help="fp32 on CUDA too")
    parser.add_argument("--append", type=Path, default=None, help="markdown file to append to")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available on this machine; use --device cpu.", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    bf16 = device.type == "cuda" and not args.no_bf16
    batch = args.batch or (256 if device.type == "cuda" else 32)
    cfg, _ = load_preset(args.preset)

    torch.manual_seed(0)
    mami = MaMI(cfg, load_init=False).to(device).eval()
    plain = create_backbone(cfg.backbone).to(device).eval()  # same ViT, no ComPA, no query head
    for module in (mami, plain):
        module.requires_grad_(False)
    size = cfg.backbone.img_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    models: dict[str, Callable[[Tensor], Tensor]] = {
        "plain ViT": lambda t: plain(t),
        "MaMI": lambda t: mami(t)["embedding"],
    }
    rates = measure(models, x, device, args.warmup, args.repeats, bf16)
    ratio = rates["MaMI"] / rates["plain ViT"]
    machine = machine_name(device)
    params = {
        name: sum(p.numel() for p in m.parameters()) / 1e6
        for name, m in (("MaMI", mami), ("plain ViT", plain))
    }
    command = command_line("embed_speed.py", argv)
    lines = [
        f"### embed_speed: preset `{args.preset}`, {device.type}, batch {batch}, "
        f"{'bf16' if bf16 else 'fp32'}",
        "",
        f"- command: `{command.strip()}`",
        f"- machine: {machine}; torch {torch.__version__}; "
        f"date {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        "| model | params (M) | images/s |",
        "|---|---:|---:|",
        *(f"| {name} | {params[name]:.1f} | {rate:.1f} |" for name, rate in rates.items()),
        "",
        f"MaMI / plain ViT throughput ratio: **{ratio:.2f}x** "
        f"(median of {args.repeats} interleaved batches after {args.warmup} warm-up rounds)",
        "",
    ]
    text = "\n".join(lines)
    publish(text, args.append)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
