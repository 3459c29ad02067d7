"""Throughput of the pixel scrub (images/s) and its ratio to a roofline measured in the same run.

The scrub of one image costs ``steps`` x (``eot_samples`` re-identifier passes + one MFM pass,
each forward and backward to the input), plus SSIM and resizing at native resolution. The
roofline is that model work alone, timed at a large batch:

    roofline images/s = 1 / (steps x (eot_samples x t_reid + t_mfm))

with ``t_reid``/``t_mfm`` the per-image forward+backward times. The scrub handles one image (or
volume) at a time, so on a GPU its batches are only ``eot_samples`` images deep.

    python benchmarks/scrub_pixel_speed.py --preset demo --device cpu --images 6
    python benchmarks/scrub_pixel_speed.py --reid mami-demo --device cuda --images 64
    ... --append /tmp/scrub_pixels.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_report import command_line, machine_name, publish, sync
from torch import Tensor

from deid.scrub.optimizer import scrub_batch
from deid.scrub.pixel_adversary import Adversary, load_adversary
from deid.scrub.pixel_settings import settings_for
from reid_model.config import load_preset
from reid_model.data import open_source
from reid_model.evaluate import resolve_checkpoint
from reid_model.mfm import PhantomFrozenMFM, PhantomMFMConfig, PhantomMFMNet
from reid_model.model import MaMI


def random_adversary(preset: str, device: torch.device, bf16: bool) -> Adversary:
    """Randomly initialised models of a preset's size (speed does not depend on the weights)."""
    torch.manual_seed(0)
    cfg, _ = load_preset(preset)
    model = MaMI(cfg, load_init=False)
    mfm = PhantomFrozenMFM(PhantomMFMNet(PhantomMFMConfig(("f",), ("m",))), cfg.preprocess)
    return Adversary([model], [cfg.preprocess], [mfm], device, bf16)


def per_image_seconds(
    fn: Callable[[Tensor], Tensor], x: Tensor, adversary: Adversary, repeats: int
) -> float:
    """Median seconds per image of forward+backward of ``fn`` w.r.t. its input batch ``x``."""
    times = []
    for i in range(repeats + 1):
        leaf = x.clone().requires_grad_(True)
        sync(adversary.device)
        start = time.perf_counter()
        with adversary.autocast():
            out = fn(leaf).float().sum()
        out.backward()
        sync(adversary.device)
        if i:  # the first round warms up
            times.append(time.perf_counter() - start)
    return statistics.median(times) / x.shape[0]


def roofline(adversary: Adversary, eot: int, steps: int, batch: int, repeats: int) -> dict:
    size = adversary.primary.img_size
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    x = x.to(adversary.device)
    t_reid = sum(
        per_image_seconds(lambda t, m=m: m(t)["embedding"], x, adversary, repeats)
        for m in adversary.reidentifiers
    )
    t_mfm = sum(per_image_seconds(m, x, adversary, repeats) for m in adversary.mfms)
    return {
        "reid_images_per_s": 1.0 / t_reid,
        "mfm_images_per_s": 1.0 / t_mfm if t_mfm else None,
        "roofline_images_per_s": 1.0 / (steps * (eot * t_reid + t_mfm)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reid", nargs="*", help="checkpoints (default: random --preset model)")
    parser.add_argument("--mfm", nargs="*", default=None, help="MFM specs with --reid")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--data", default="phantom:cxr_site_a:40:1:0")
    parser.add_argument(
        "--images", type=int, default=6, help="timed images (after a warm-up batch)"
    )
    parser.add_argument(
        "--scrub-batch", type=int, default=None, help="images scrubbed together (CPU 1, GPU 16)"
    )
    parser.add_argument("--strength", default="medium")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-bf16", action="store_true", help="fp32 on CUDA too")
    parser.add_argument("--batch", type=int, default=None, help="roofline batch (CPU 8, GPU 128)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--append", type=Path, default=None)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available on this machine; use --device cpu.", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    bf16 = device.type == "cuda" and not args.no_bf16
    if args.reid:
        checkpoints = [resolve_checkpoint(c) for c in args.reid]
        adversary = load_adversary(checkpoints, args.mfm, device, bf16)
        models = ", ".join(str(c) for c in checkpoints)
    else:
        adversary = random_adversary(args.preset, device, bf16)
        models = f"random `{args.preset}` preset MaMI + random phantom MFM"
    settings = settings_for(args.strength)
    source = open_source(args.data)
    total = args.images + (args.scrub_batch or (16 if device.type == "cuda" else 1))
    images = [source.load(e) for e in source.entries[:total]]
    if len(images) < total:
        print(f"{args.data} has {len(images)} images; {total} needed.", file=sys.stderr)
        return 2
    size = args.scrub_batch or (16 if device.type == "cuda" else 1)
    modality = images[0][1]
    batches = [[p for p, _ in images[:size]]]  # the first batch warms up
    rest = [p for p, _ in images[size:]]
    batches += [rest[i : i + size] for i in range(0, len(rest), size)]
    seconds, counted = [], 0
    for i, batch in enumerate(batches):
        sync(device)
        start = time.perf_counter()
        scrub_batch(batch, modality, adversary, settings, torch.Generator().manual_seed(i))
        sync(device)
        if i:
            seconds.append((time.perf_counter() - start) / len(batch))
            counted += len(batch)
    rate = 1.0 / statistics.mean(seconds)
    batch = args.batch or (128 if device.type == "cuda" else 8)
    roof = roofline(adversary, settings.eot_samples, settings.steps, batch, args.repeats)
    ratio = rate / roof["roofline_images_per_s"]
    machine = machine_name(device)
    shape = "x".join(str(n) for n in images[0][0].shape)
    command = command_line("scrub_pixel_speed.py", argv)
    mfm_rate = roof["mfm_images_per_s"]
    lines = [
        f"### scrub_pixel_speed: {args.strength} (eps {settings.epsilon}, {settings.steps} steps, "
        f"{settings.eot_samples} EOT), {device.type}, {'bf16' if bf16 else 'fp32'}",
        "",
        f"- command: `{command.strip()}`",
        f"- models: {models}; images: {args.data} ({shape}), {counted} timed, "
        f"scrubbed {size} at a time",
        f"- machine: {machine}; torch {torch.__version__}; "
        f"date {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| scrub images/s | {rate:.3f} |",
        f"| seconds per image | {statistics.mean(seconds):.2f} |",
        f"| re-identifier fwd+bwd images/s (batch {batch}) | {roof['reid_images_per_s']:.1f} |",
        f"| MFM fwd+bwd images/s (batch {batch}) | "
        f"{'' if mfm_rate is None else f'{mfm_rate:.1f}'} |",
        f"| roofline images/s | {roof['roofline_images_per_s']:.3f} |",
        f"| ratio to roofline | **{ratio:.2f}** |",
        "",
    ]
    text = "\n".join(lines)
    publish(text, args.append)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
