"""Training throughput and peak memory of MaMI versus a plain timm ViT of the same size.

One training step is forward, the losses, backward and an AdamW step on a P x K batch of random
preprocessed images. MaMI runs its full objective (identity cross-entropy, batch-hard triplet and,
when the preset names MFMs, the alignment to the frozen MFM, which adds the MFM's forward pass);
the plain ViT is the same timm backbone with a BNNeck and the identity and triplet losses. Steps
alternate between the two models and the median over the repeats is reported, so machine-load
drift hits both alike. Peak memory: on CUDA, the allocator's peak per model; on CPU the resident
set of the whole process (both models), which is what a user of the machine sees.

    python benchmarks/train_speed.py --preset demo --device cpu
    python benchmarks/train_speed.py --preset paper --device cuda --p 64 --k 4
    ... --append /tmp/train_speed.md     # also append a markdown record
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_report import command_line, machine_name, publish, sync
from torch import Tensor, nn

from reid_model.config import load_preset
from reid_model.losses import id_loss, triplet_loss
from reid_model.model import build_model
from reid_model.train import compute_losses, parameter_groups
from reid_model.vit_lora import create_backbone


class PlainReid(nn.Module):
    """The preset's timm ViT with a BNNeck and an identity classifier (no ComPA, no queries)."""

    def __init__(self, backbone: nn.Module, width: int, classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = nn.BatchNorm1d(width)
        self.classifier = nn.Linear(width, classes, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.backbone(x)
        return feat, self.classifier(self.neck(feat))


def step_fn(
    model: nn.Module, loss: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, bf16: bool
) -> Callable[[], None]:
    """One optimiser step of ``model`` on (x, y)."""
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.05), lr=1e-4)
    device_type = x.device.type

    def step() -> None:
        autocast = (
            torch.autocast(device_type=device_type, dtype=torch.bfloat16)
            if bf16
            else contextlib.nullcontext()
        )
        with autocast:
            value = loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--p", type=int, default=None, help="patients per batch (CPU 8, CUDA 64)")
    parser.add_argument("--k", type=int, default=4, help="images per patient")
    parser.add_argument("--classes", type=int, default=1000, help="training identities")
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
    p = args.p or (64 if device.type == "cuda" else 8)
    batch = p * args.k
    cfg, train_cfg = load_preset(args.preset)

    torch.manual_seed(0)
    mami = build_model(cfg, num_classes=args.classes).to(device).train()
    width = cfg.backbone.embed_dim
    plain = PlainReid(create_backbone(cfg.backbone), width, args.classes).to(device).train()
    gen = torch.Generator().manual_seed(0)
    size = cfg.backbone.img_size
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    y = torch.arange(p).repeat_interleave(args.k).to(device)

    def mami_loss(x: Tensor, y: Tensor) -> Tensor:
        return compute_losses(mami, mami(x), x, y, train_cfg, cfg)["total"]

    def plain_loss(x: Tensor, y: Tensor) -> Tensor:
        feat, logits = plain(x)
        smoothing = train_cfg.label_smoothing
        return id_loss(logits.float(), y, smoothing) + triplet_loss(feat.float(), y)

    steps = {
        "plain ViT": step_fn(plain, plain_loss, x, y, bf16),
        "MaMI": step_fn(mami, mami_loss, x, y, bf16),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    peaks: dict[str, float] = {}
    for round_ in range(args.warmup + args.repeats):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            if round_ >= args.warmup:
                times[name].append(time.perf_counter() - start)
            if device.type == "cuda":
                peaks[name] = max(peaks.get(name, 0.0), torch.cuda.max_memory_allocated(device))
    rates = {name: batch / statistics.median(t) for name, t in times.items()}
    ratio = rates["MaMI"] / rates["plain ViT"]
    machine = machine_name(device)
    if device.type == "cuda":
        memory = {name: f"{peaks[name] / 2**30:.2f} GiB" for name in steps}
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
        memory = {name: f"process {rss:.2f} GiB" for name in steps}
    trainable = {
        name: sum(q.numel() for q in m.parameters() if q.requires_grad) / 1e6
        for name, m in (("MaMI", mami), ("plain ViT", plain))
    }
    mfm = ", ".join(cfg.mfm) if cfg.mfm and cfg.head.align != "none" else "none"
    command = command_line("train_speed.py", argv)
    lines = [
        f"### train_speed: preset `{args.preset}`, {device.type}, batch {p} x {args.k}, "
        f"{'bf16' if bf16 else 'fp32'}",
        "",
        f"- command: `{command.strip()}`",
        f"- machine: {machine}; torch {torch.__version__}; "
        f"date {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- MaMI objective: identity + triplet + `{cfg.head.align}` alignment "
        f"(weight {cfg.head.align_weight}) to MFM: {mfm}; {args.classes} identities",
        "",
        "| model | trainable params (M) | training images/s | peak memory |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {trainable[name]:.1f} | {rates[name]:.1f} | {memory[name]} |"
            for name in steps
        ),
        "",
        f"MaMI / plain ViT training throughput ratio: **{ratio:.2f}x** "
        f"(median of {args.repeats} interleaved steps after {args.warmup} warm-up rounds)",
        "",
    ]
    text = "\n".join(lines)
    publish(text, args.append)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
