"""Training of the MaMI re-identifier: P x K batches, ID + triplet + alignment losses, AdamW with
warmup and cosine decay, per-epoch validation, calibration and atomic checkpoints, resumable, and
DDP-capable under ``torchrun`` (gloo on CPU, NCCL on CUDA).

Run directory layout::

    RUN/run.json                    what was trained (preset, data, seed); checked on --resume
    RUN/epochs/epoch-NNN/           checkpoint of the last finished epoch + train_state.pt
    RUN/LATEST                      name of that epoch folder (written last, atomically)
    RUN/history.json                per-epoch losses, validation metrics and throughput
    RUN/model/                      the final checkpoint, with calibration (ship this)

Usage: ``python -m reid_model.train --preset demo --data phantom:all:40:3 --out RUN`` or
``torchrun --nproc_per_node 2 -m reid_model.train ...`` or ``deid train ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, DataLoader

from deid.errors import CheckpointError, DeidError, InputError, OutputError
from deid.io.atomic import atomic_write_text
from reid_model.config import ModelConfig, TrainConfig
from reid_model.data import ReidDataset, augment, open_source, split_entries
from reid_model.evaluate import check_protocol, validate

TRAIN_STATE = "train_state.pt"
# datasets up to this many images are preprocessed once and kept in memory
CACHE_LIMIT = 50_000


@dataclass(frozen=True)
class TrainOptions:
    """What a training run is asked to do; ``None`` fields keep the preset's value."""

    preset: str
    data: str
    out: Path
    resume: bool = False
    epochs: int | None = None
    seed: int | None = None
    images_per_epoch: int | None = None
    device: str | None = None
    num_workers: int = 0
    quiet: bool = False
    stop_after: int | None = None  # epochs to run in this invocation; continue with resume


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def train_reid(options: TrainOptions) -> Path:
    """Train (or resume training) a re-identifier; return the final checkpoint folder.

    Parameters
    ----------
    options : TrainOptions
        Preset, data spec (see :func:`reid_model.data.open_source`), run folder and overrides.

    Returns
    -------
    Path
        ``options.out / "model"``, loadable with ``reid_model.checkpoint.load_checkpoint``
        (the last epoch folder when ``stop_after`` ended the run early).

    Raises
    ------
    InputError
        Bad data spec, or too few patients/visits for P x K batches and validation.
    OutputError
        ``out`` already holds a run and ``resume`` is false, or the run differs from it.
    CheckpointError
        The run's last checkpoint cannot be loaded on ``resume``.
    """
    from reid_model.config import load_preset
    from reid_model.model import build_model

    ddp = _init_distributed()
    try:
        model_cfg, train_cfg = load_preset(options.preset)
        overrides = {
            "epochs": options.epochs,
            "seed": options.seed,
            "images_per_epoch": options.images_per_epoch,
        }
        train_cfg = dataclasses.replace(
            train_cfg, **{k: v for k, v in overrides.items() if v is not None}
        )
        device = _device(options.device, ddp)
        out = Path(options.out)
        run_info = {
            "task": "reid",
            "preset": options.preset,
            "data": options.data,
            "seed": train_cfg.seed,
            "train": train_cfg.to_dict(),
        }
        _on_main_first(ddp, lambda: prepare_run_dir(out, run_info, options.resume))

        source = open_source(options.data)
        train_set = ReidDataset(
            source, split_entries(source, "train"), model_cfg.preprocess, volume_mode="slice"
        )
        _check_trainable(train_set, train_cfg.batch_p, train_cfg.batch_k)
        val_set = ReidDataset(source, split_entries(source, "val"), model_cfg.preprocess)
        check_protocol(val_set.entries, "val")
        if len(train_set) <= CACHE_LIMIT:
            train_set.preload(options.num_workers)
        if ddp.main and len(val_set) <= CACHE_LIMIT:
            val_set.preload(options.num_workers)

        num_classes = len(train_set.labels_by_patient)
        torch.manual_seed(train_cfg.seed)
        model = build_model(model_cfg, num_classes=num_classes).to(device)
        optimizer = torch.optim.AdamW(
            parameter_groups(model, train_cfg.weight_decay), lr=train_cfg.lr
        )
        batches_per_epoch = _batches_per_epoch(train_cfg, ddp.world, len(train_set))
        steps_per_rank = batches_per_epoch // ddp.world
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            warmup_cosine(
                train_cfg.warmup_epochs * steps_per_rank, train_cfg.epochs * steps_per_rank
            ),
        )
        start_epoch, history = 0, []
        if options.resume:
            start_epoch, history = _restore(out, model, optimizer, scheduler, device)
        net: nn.Module = model
        if ddp.world > 1:
            net = nn.parallel.DistributedDataParallel(
                model,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True,  # frozen MFM branches and optional heads
            )

        calibration = None
        end_epoch = train_cfg.epochs
        if options.stop_after is not None:
            end_epoch = min(end_epoch, start_epoch + options.stop_after)
        for epoch in range(start_epoch, end_epoch):
            stats = _train_epoch(
                net,
                model,
                train_set,
                optimizer,
                scheduler,
                train_cfg,
                model_cfg,
                epoch,
                steps_per_rank,
                ddp,
                device,
                options,
            )
            if ddp.main:
                metrics, calibrator = validate(model, val_set, device)
                calibration = _as_dict(calibrator)
                history.append({"epoch": epoch + 1, **stats, "val": metrics})
                _log_epoch(history[-1], options.quiet)
                _save_epoch(
                    out,
                    model,
                    model_cfg,
                    optimizer,
                    scheduler,
                    epoch + 1,
                    history,
                    calibration,
                    run_info,
                    num_classes,
                )
            _barrier(ddp)

        if end_epoch < train_cfg.epochs:  # stopped early on request
            return latest_epoch_dir(out) or out
        if ddp.main:
            if calibration is None:  # resumed a run whose epochs were all done
                calibration = _as_dict(validate(model, val_set, device)[1])
            _save_final(out, model, model_cfg, calibration, run_info, num_classes, history)
        _barrier(ddp)
        return out / "model"
    finally:
        if ddp.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------
# one epoch


def _train_epoch(
    net: nn.Module,
    model: nn.Module,
    train_set: ReidDataset,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    train_cfg: TrainConfig,
    model_cfg: ModelConfig,
    epoch: int,
    steps_per_rank: int,
    ddp: _Dist,
    device: torch.device,
    options: TrainOptions,
) -> dict[str, float]:
    from tqdm.auto import tqdm

    from reid_model.sampler import PKSampler

    # every random choice of this epoch comes from seeds derived from (seed, epoch), so a resumed
    # run repeats exactly what an uninterrupted run would have done
    epoch_seed = train_cfg.seed * 10_007 + epoch
    torch.manual_seed(epoch_seed)  # dropout and other in-model randomness
    sampler_gen = torch.Generator().manual_seed(epoch_seed)
    augment_gen = torch.Generator().manual_seed(epoch_seed + 1_000_000_007 + ddp.rank)
    train_set.set_slice_seed(epoch_seed)

    # every rank draws the same P x K stream and keeps every world-th whole batch, so identities
    # stay together within a batch (the triplet loss needs positives)
    sampler = PKSampler(
        train_set.labels,
        train_cfg.batch_p,
        train_cfg.batch_k,
        steps_per_rank,
        sampler_gen,
        rank=ddp.rank,
        world_size=ddp.world,
    )
    loader = DataLoader(
        train_set,
        batch_sampler=BatchSampler(sampler, train_cfg.batch_p * train_cfg.batch_k, drop_last=True),
        num_workers=0 if train_set.cached else options.num_workers,
    )
    net.train()
    use_bf16 = bool(train_cfg.bf16) and device.type == "cuda"
    totals: dict[str, torch.Tensor] = {}  # on the device: reading them each step would sync
    images, steps, started = 0, 0, time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"epoch {epoch + 1}/{train_cfg.epochs}",
        disable=options.quiet or not ddp.main,
        leave=False,
    )
    for batch in bar:
        x = augment(batch.pixels.to(device, non_blocking=True), augment_gen)
        y = batch.label.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = net(x)
            losses = compute_losses(model, out, x, y, train_cfg, model_cfg)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        if train_cfg.grad_clip and train_cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        optimizer.step()
        scheduler.step()

        steps += 1
        images += x.shape[0] * ddp.world
        for name, value in losses.items():
            totals[name] = totals.get(name, 0.0) + value.detach().float()
        if not bar.disable and (steps % 10 == 1 or steps == len(bar)):
            rate = images / max(time.perf_counter() - started, 1e-9)
            shown = {k: f"{float(v) / steps:.3f}" for k, v in totals.items()}
            bar.set_postfix(shown | {"img/s": f"{rate:.1f}"})
    bar.close()
    means = {name: float(value) / max(steps, 1) for name, value in totals.items()}
    if ddp.world > 1:
        means = _all_reduce_mean(means, device)
    elapsed = time.perf_counter() - started
    return {
        "losses": means,
        "lr": float(scheduler.get_last_lr()[0]),
        "images_per_s": images / max(elapsed, 1e-9),
    }


def compute_losses(
    model: nn.Module,
    out: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    train_cfg: TrainConfig,
    model_cfg: ModelConfig,
) -> dict[str, torch.Tensor]:
    """The named losses of one batch: ``id``, ``triplet``, ``align`` and their weighted ``total``.

    ``align`` is the MFM alignment loss (difference or single form, per the head config),
    weighted by ``head.align_weight`` in ``total``; zero when alignment is off or no MFM is set.
    """
    from reid_model.losses import (
        difference_alignment_loss,
        id_loss,
        single_alignment_loss,
        triplet_loss,
    )

    losses = {
        "id": id_loss(out["logits"].float(), y, train_cfg.label_smoothing),
        "triplet": triplet_loss(out["feat"].float(), y, train_cfg.triplet_margin),
    }
    head = model_cfg.head
    align = torch.zeros((), device=x.device)
    if head.align != "none" and "parts_proj" in out:
        targets = model.align_targets(x, attn=out["attn"])  # frozen MFM under the same maps
        if targets is not None:
            fn = difference_alignment_loss if head.align == "difference" else single_alignment_loss
            align = fn(out["parts_proj"].float(), targets.float(), head.align_temperature)
    losses["align"] = align
    losses["total"] = losses["id"] + losses["triplet"] + head.align_weight * align
    return losses


# ---------------------------------------------------------------------------------------------
# optimiser and schedule


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on norms, biases, embeddings, query tokens and modality bases.

    Parameters
    ----------
    model : nn.Module
        The model; frozen parameters (``requires_grad=False``) are left out.
    weight_decay : float
        Decay of the remaining (matrix) weights.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = (
            param.ndim <= 1
            or name.endswith(".bias")
            or any(key in name for key in ("bases", "pos_embed", "cls_token", "query"))
        )
        (no_decay if exempt else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(warmup_steps: int, total_steps: int, floor: float = 0.01):
    """LR multiplier: linear warmup to 1 over ``warmup_steps``, then cosine down to ``floor``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _batches_per_epoch(train_cfg: TrainConfig, world: int, num_images: int) -> int:
    per_batch = train_cfg.batch_p * train_cfg.batch_k
    images = train_cfg.images_per_epoch or num_images  # 0: one pass over the training images
    batches = max(1, math.ceil(images / per_batch))
    return math.ceil(batches / world) * world  # every rank takes the same number of steps


def _check_trainable(train_set: ReidDataset, p: int, k: int) -> None:
    patients = len(train_set.labels_by_patient)
    if patients < p:
        raise InputError(
            f"the training split has {patients} patients but a batch needs P={p} different "
            "patients; generate more patients or use a preset with a smaller batch_p"
        )
    if len(train_set) == patients:
        raise InputError(
            "every training patient has a single image; re-identification training needs at "
            "least 2 visits per patient"
        )


# ---------------------------------------------------------------------------------------------
# run folder, checkpoints, resume


def prepare_run_dir(out: Path, run_info: dict, resume: bool) -> None:
    """Create run folder ``out`` with its ``run.json``, or check it on resume.

    Raises
    ------
    OutputError
        ``out`` is not empty and ``resume`` is false; or, resuming, it has no finished epoch or
        was started with different options.
    """
    info_path = out / "run.json"
    if resume:
        if not (out / "LATEST").is_file():
            raise OutputError(
                f"{out} holds no finished epoch to resume from; start a new run without --resume"
            )
        saved = json.loads(info_path.read_text(encoding="utf-8"))
        differs = [k for k in sorted(run_info) if saved.get(k) != run_info[k]]
        if differs:
            raise OutputError(
                f"cannot resume {out}: {differs} differ from the run it holds; resume with the "
                "same options or choose a new --out"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise OutputError(
            f"{out} already holds files; pass --resume to continue that run or choose an empty "
            "--out folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(info_path, json.dumps(run_info, indent=2) + "\n")


def _save_epoch(
    out: Path,
    model: nn.Module,
    model_cfg: ModelConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch: int,
    history: list[dict],
    calibration: dict | None,
    run_info: dict,
    num_classes: int,
) -> None:
    from reid_model.checkpoint import save_checkpoint

    def write(folder: Path) -> None:
        extra = {**run_info, "epoch": epoch, "num_classes": num_classes}
        save_checkpoint(folder, model, model_cfg, calibration=calibration, extra=extra)

    commit_epoch(out, epoch, write, optimizer, scheduler, history)


def commit_epoch(
    out: Path,
    epoch: int,
    write: Callable[[Path], None],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    history: list[dict],
) -> None:
    """Write the checkpoint of a finished epoch so that a crash at any point leaves the previous
    one usable: ``write`` fills a partial folder, which gets the optimizer and scheduler state,
    is renamed to ``epochs/epoch-NNN``, and only then does ``LATEST`` point at it."""
    epochs_dir = out / "epochs"
    epochs_dir.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch:03d}"
    tmp = epochs_dir / f".partial-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    state = {
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": json.dumps(history),  # a string keeps the file loadable with weights_only
    }
    torch.save(state, tmp / TRAIN_STATE)
    final = epochs_dir / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    previous = latest_epoch_dir(out)
    atomic_write_text(out / "LATEST", name + "\n")
    atomic_write_text(out / "history.json", json.dumps(history, indent=2) + "\n")
    if previous is not None and previous != final:
        shutil.rmtree(previous, ignore_errors=True)


def latest_epoch_dir(out: Path) -> Path | None:
    """The folder of the last finished epoch of run ``out``, or None before the first."""
    latest = out / "LATEST"
    return out / "epochs" / latest.read_text().strip() if latest.is_file() else None


def load_train_state(
    folder: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> tuple[int, list[dict]]:
    """Restore optimizer and scheduler from an epoch folder; return (epoch, history)."""
    state = torch.load(folder / TRAIN_STATE, map_location=device, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["epoch"]), json.loads(state["history"])


def _restore(
    out: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> tuple[int, list[dict]]:
    from reid_model.checkpoint import load_checkpoint

    last = latest_epoch_dir(out)
    assert last is not None  # checked by prepare_run_dir
    try:
        saved, _, _ = load_checkpoint(last, device="cpu")
        model.load_state_dict(saved.state_dict())
        return load_train_state(last, optimizer, scheduler, device)
    except (OSError, RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"cannot resume from {last}: {exc}; delete that run folder and train again"
        ) from exc


def _as_dict(calibrator) -> dict | None:
    return calibrator.to_dict() if calibrator is not None else None


def _save_final(
    out: Path,
    model: nn.Module,
    model_cfg: ModelConfig,
    calibration: dict | None,
    run_info: dict,
    num_classes: int,
    history: list[dict],
) -> None:
    from reid_model.checkpoint import save_checkpoint

    tmp = out / ".partial-model"
    shutil.rmtree(tmp, ignore_errors=True)
    last = history[-1] if history else {}
    extra = {
        **run_info,
        "epoch": last.get("epoch", 0),
        "num_classes": num_classes,
        "val": last.get("val", {}),
    }
    save_checkpoint(tmp, model, model_cfg, calibration=calibration, extra=extra)
    shutil.rmtree(out / "model", ignore_errors=True)
    os.replace(tmp, out / "model")


def _log_epoch(record: dict, quiet: bool) -> None:
    if quiet:
        return
    from tqdm.auto import tqdm

    losses = " ".join(f"{k}={v:.3f}" for k, v in record["losses"].items())
    tqdm.write(f"epoch {record['epoch']}: {losses} ({record['images_per_s']:.1f} img/s)")
    for dataset, metrics in record["val"].items():
        tqdm.write(f"  val {dataset}: rank-1 {metrics['rank1']:.3f}  mAP {metrics['mAP']:.3f}")


# ---------------------------------------------------------------------------------------------
# devices and processes


def _init_distributed() -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return _Dist(rank=rank, world=world, local_rank=local_rank)


def _device(name: str | None, ddp: _Dist) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but no CUDA GPU is visible; use cpu")
        device = torch.device("cuda", ddp.local_rank if ddp.world > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    return device


def _on_main_first(ddp: _Dist, action: Callable[[], None]) -> None:
    """Run ``action`` on the main process; if it raises, every process raises the same error
    (instead of the others waiting for it forever)."""
    error: DeidError | None = None
    if ddp.main:
        try:
            action()
        except DeidError as exc:
            error = exc
    if ddp.world > 1:
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error is not None:
        raise error


def _barrier(ddp: _Dist) -> None:
    if ddp.world > 1:
        dist.barrier()


def _all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    names = sorted(values)
    tensor = torch.tensor([values[n] for n in names], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(names, tensor.tolist(), strict=True))


# ---------------------------------------------------------------------------------------------
# entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (also what ``torchrun -m reid_model.train`` runs)."""
    parser = argparse.ArgumentParser(
        prog="python -m reid_model.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--preset", default="demo", help="preset name (test, demo, paper) or JSON file")
    add(
        "--data", required=True, help="release folder or phantom:<datasets|all>:<n>:<visits>[:seed]"
    )
    add("--out", required=True, type=Path, help="run folder")
    add("--resume", action="store_true", help="continue the run in --out from its last epoch")
    add("--epochs", type=int, help="override the preset's epochs")
    add("--seed", type=int, help="override the preset's seed")
    add("--images-per-epoch", type=int, help="override images per epoch (0: one pass)")
    add("--device", help="cpu or cuda (default: cuda when available)")
    add("--workers", type=int, default=0, help="DataLoader workers that render or decode images")
    add("--quiet", action="store_true", help="no progress bars or epoch lines")
    add("--stop-after", type=int, help="stop after this many epochs; continue with --resume")
    args = parser.parse_args(argv)
    final = train_reid(
        TrainOptions(
            preset=args.preset,
            data=args.data,
            out=args.out,
            resume=args.resume,
            epochs=args.epochs,
            seed=args.seed,
            images_per_epoch=args.images_per_epoch,
            device=args.device,
            num_workers=args.workers,
            quiet=args.quiet,
            stop_after=args.stop_after,
        )
    )
    if not args.quiet and int(os.environ.get("RANK", "0")) == 0:
        print(final)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "TrainOptions",
    "compute_losses",
    "main",
    "parameter_groups",
    "train_reid",
    "warmup_cosine",
]
