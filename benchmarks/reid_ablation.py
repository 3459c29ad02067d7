"""Ablation of the MaMI re-identifier: what each part adds on patients never seen in training.

Rows (``--rows``, all by default, printed in this order):

- ``pixels``: no learning; the preprocessed image (middle slice of a volume) flattened,
  mean-centred and L2-normalised;
- ``random-vit``: the preset's model with random weights, untrained;
- ``phantom-mfm``: the frozen phantom MFM (``reid_model/weights/phantom-mfm``), mean of its patch
  tokens (the feature its heads read), averaged over the slices of a volume;
- ``single``: one model per dataset, trained on that dataset's patients only, ComPA off and no
  alignment; each dataset is evaluated with its own model;
- ``joint``: one model on all datasets, ComPA off, no alignment;
- ``compa``: joint with ComPA on, no alignment;
- ``mami``: ComPA on and difference alignment with the frozen MFM(s) (the full model);
- ``mami-single-align``: as ``mami`` with the single (non-difference) alignment loss.

Trained rows differ from the preset only in ``compa.enabled``, ``head.align`` (and
``head.align_weight`` where the preset's is 0); each variant is written as a preset JSON file in
its run folder and trained with ``reid_model.train.train_reid`` on the same data, for the same
epochs and seed (``single`` splits the training data, and ``images_per_epoch`` if the preset
fixes it, across its per-dataset models). Every row is evaluated on the test split of
``--test-data``, by default a phantom world with another seed, so no test patient was seen in
training. Rank-1 and mAP are reported per dataset (query and gallery within the dataset) and
as the mean over datasets.

A finished run folder under ``--runs`` is reused instead of retrained (after checking that it
was trained with the same config, data, epochs and seed), and an unfinished one is resumed from
its last epoch, so a long ablation can be interrupted and started again with the same command.

    python benchmarks/reid_ablation.py --preset test --epochs 1 --rows pixels,joint --device cpu
    python benchmarks/reid_ablation.py --preset demo --device cpu --runs runs/ablation-demo
    python benchmarks/reid_ablation.py --preset demo --device cuda --workers 8 \\
        --runs runs/ablation-demo-gpu --append benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from bench_report import command_line, machine_name, publish
from torch import Tensor, nn

from reid_model.config import HeadConfig, ModelConfig, TrainConfig, load_preset
from reid_model.data import ReidDataset, open_source, split_entries
from reid_model.evaluate import check_protocol, embed, query_mask
from reid_model.metrics import evaluate_retrieval

ROWS = (
    "pixels",
    "random-vit",
    "phantom-mfm",
    "single",
    "joint",
    "compa",
    "mami",
    "mami-single-align",
)
TRAINED = ("single", "joint", "compa", "mami", "mami-single-align")
WHAT = {
    "pixels": "normalised pixels, no learning",
    "random-vit": "preset model, random init, untrained",
    "phantom-mfm": "frozen phantom MFM, mean patch token",
    "single": "one model per dataset, ComPA off, no alignment",
    "joint": "one model for all datasets, ComPA off, no alignment",
    "compa": "joint + ComPA, no alignment",
    "mami": "ComPA + difference alignment (full)",
    "mami-single-align": "ComPA + single alignment",
}


def log(message: str) -> None:
    print(f"[reid_ablation] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# non-learned and frozen embedders (same interface as MaMI for reid_model.evaluate.embed)


class PixelEmbedder(nn.Module):
    """Preprocessed pixels as the embedding: flattened, mean-centred, L2-normalised."""

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.dim() == 5:  # volumes (B, S, 3, H, W): the middle slice
            x = x[:, x.shape[1] // 2]
        flat = x.flatten(1).float()
        flat = flat - flat.mean(dim=1, keepdim=True)
        return {"embedding": F.normalize(flat, dim=1)}


class MFMEmbedder(nn.Module):
    """Global feature of a frozen MFM: the mean of its patch tokens (mean over slices too)."""

    def __init__(self, mfm: nn.Module) -> None:
        super().__init__()
        self.mfm = mfm

    def _global(self, x: Tensor) -> Tensor:
        return self.mfm(x).flatten(1, 2).mean(dim=1)  # (B, h, w, D) -> (B, D)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.dim() == 5:
            b, s = x.shape[:2]
            feats = self._global(x.flatten(0, 1)).unflatten(0, (b, s)).mean(dim=1)
        else:
            feats = self._global(x)
        return {"embedding": feats}


# ---------------------------------------------------------------------------------------------
# variants and data


def variant_config(cfg: ModelConfig, row: str) -> ModelConfig:
    """The preset's model config with only ComPA and the alignment set for a trained row."""
    compa, align = {
        "single": (False, "none"),
        "joint": (False, "none"),
        "compa": (True, "none"),
        "mami": (True, "difference"),
        "mami-single-align": (True, "single"),
    }[row]
    weight = cfg.head.align_weight
    if align != "none" and weight <= 0:  # the preset turns alignment off by its weight
        weight = HeadConfig().align_weight
    head = dataclasses.replace(cfg.head, align=align, align_weight=weight)
    return dataclasses.replace(cfg, compa=dataclasses.replace(cfg.compa, enabled=compa), head=head)


def config_changes(base: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key=value`` for every (nested) field of ``new`` that differs from ``base``."""
    out = []
    for key, value in new.items():
        if isinstance(value, dict):
            out += config_changes(base.get(key, {}), value, f"{prefix}{key}.")
        elif base.get(key) != value:
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out


def phantom_parts(spec: str) -> tuple[list[str], str, str, str]:
    """(datasets, patients, visits, seed) of a phantom spec, datasets in source order."""
    if not spec.startswith("phantom:"):
        raise SystemExit(
            f"--train-data {spec!r}: the `single` row needs a phantom spec "
            "(phantom:<datasets|all>:<patients>:<visits>[:seed]) to train one model per dataset"
        )
    source = open_source(spec)
    parts = spec.split(":")
    seed = parts[4] if len(parts) == 5 else "0"
    return list(dict.fromkeys(e.dataset for e in source.entries)), parts[2], parts[3], seed


def train_images(spec: str) -> int:
    """Images in the train split of ``spec`` (entries only, nothing is rendered)."""
    return len(split_entries(open_source(spec), "train"))


def steps_per_epoch(train_cfg: TrainConfig, images_per_epoch: int, n_images: int) -> int:
    """Optimizer steps of one epoch, as ``train_reid`` counts them (one process)."""
    from reid_model.train import _batches_per_epoch

    cfg = dataclasses.replace(train_cfg, images_per_epoch=images_per_epoch)
    return _batches_per_epoch(cfg, 1, n_images)


# ---------------------------------------------------------------------------------------------
# training (or reuse) of one model


@dataclass
class TrainedModel:
    name: str  # dataset name for `single`, else "all"
    checkpoint: Path
    data: str
    epochs: int
    seed: int
    steps: int  # optimizer steps over all epochs
    images: int  # training images seen (steps x batch)
    train_s: float  # sum of the epochs' training time, from the run's history
    wall_s: float | None  # train_reid wall time (data, training, validation, checkpoints)
    how: str  # "trained", "resumed" or "reused"


class AblationError(SystemExit):
    pass


def write_preset(path: Path, model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    text = json.dumps({"model": model_cfg.to_dict(), "train": train_cfg.to_dict()}, indent=2)
    if path.is_file():
        if json.loads(path.read_text(encoding="utf-8")) != json.loads(text):
            raise AblationError(
                f"{path} holds another config than this run would train (other preset or "
                "--epochs); use another --runs folder or delete that one"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def check_reusable(out: Path, data: str, model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    """Raise unless the finished run in ``out`` was trained as asked."""
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    meta = json.loads((out / "model" / "config.json").read_text(encoding="utf-8"))
    differs = [
        name
        for name, saved, wanted in (
            ("data", run.get("data"), data),
            ("seed", run.get("seed"), train_cfg.seed),
            ("train", run.get("train"), train_cfg.to_dict()),
            ("model", meta.get("model_config"), model_cfg.to_dict()),
        )
        if saved != wanted
    ]
    if differs:
        raise AblationError(
            f"{out} holds a finished run whose {differs} differ from this ablation's; use "
            "another --runs folder or delete that run"
        )


def history_seconds(out: Path, steps_per_epoch_: int, batch: int) -> float:
    """Training time summed over the run's epochs (images / images_per_s of each epoch)."""
    history = json.loads((out / "history.json").read_text(encoding="utf-8"))
    return sum(steps_per_epoch_ * batch / max(r["images_per_s"], 1e-12) for r in history)


def train_one(
    name: str,
    out: Path,
    preset: Path,
    data: str,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    args: argparse.Namespace,
) -> TrainedModel:
    from reid_model.train import TrainOptions, train_reid

    batch = train_cfg.batch_p * train_cfg.batch_k
    per_epoch = steps_per_epoch(train_cfg, train_cfg.images_per_epoch, train_images(data))
    wall_file = out.with_name(out.name + ".wall.json")
    if (out / "model" / "config.json").is_file():
        check_reusable(out, data, model_cfg, train_cfg)
        how = "reused"
        wall = json.loads(wall_file.read_text()) if wall_file.is_file() else {}
        wall_s = wall.get("wall_s")
        log(f"reusing {out}")
    else:
        resume = (out / "LATEST").is_file()
        if out.exists() and not resume:  # started, but no epoch finished: nothing to keep
            shutil.rmtree(out)
        log(f"{'resuming' if resume else 'training'} {out} on {data}")
        started = time.perf_counter()
        train_reid(
            TrainOptions(
                preset=str(preset.resolve()),
                data=data,
                out=out,
                resume=resume,
                images_per_epoch=train_cfg.images_per_epoch,
                device=args.device,
                num_workers=args.workers,
                quiet=args.quiet,
            )
        )
        wall_s = time.perf_counter() - started
        how = "resumed" if resume else "trained"
        wall_file.write_text(json.dumps({"wall_s": wall_s, "how": how}) + "\n", encoding="utf-8")
    return TrainedModel(
        name=name,
        checkpoint=out / "model",
        data=data,
        epochs=train_cfg.epochs,
        seed=train_cfg.seed,
        steps=per_epoch * train_cfg.epochs,
        images=per_epoch * train_cfg.epochs * batch,
        train_s=history_seconds(out, per_epoch, batch),
        wall_s=wall_s,
        how=how,
    )


def train_row(
    row: str,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    args: argparse.Namespace,
) -> list[TrainedModel]:
    """Train (or reuse) the model(s) of a trained row; one per dataset for ``single``."""
    folder = args.runs / row
    preset = folder / "preset.json"
    if row != "single":
        return [
            train_one("all", folder / "run", preset, args.train_data, model_cfg, train_cfg, args)
        ]
    datasets, patients, visits, seed = phantom_parts(args.train_data)
    specs = {d: f"phantom:{d}:{patients}:{visits}:{seed}" for d in datasets}
    counts = {d: train_images(spec) for d, spec in specs.items()}
    models = []
    for dataset, spec in specs.items():
        cfg = train_cfg
        if train_cfg.images_per_epoch:  # a fixed epoch size is shared out, as the data is
            share = round(train_cfg.images_per_epoch * counts[dataset] / sum(counts.values()))
            cfg = dataclasses.replace(train_cfg, images_per_epoch=max(1, share))
        models.append(
            train_one(dataset, folder / f"run-{dataset}", preset, spec, model_cfg, cfg, args)
        )
    return models


# ---------------------------------------------------------------------------------------------
# evaluation


def retrieval(model: nn.Module, test_set: ReidDataset, args: argparse.Namespace) -> dict:
    emb = embed(model, test_set, args.device, args.batch_size)
    pids = np.asarray(test_set.labels, dtype=np.int64)
    result = evaluate_retrieval(
        emb, pids, query_mask(test_set.entries), n_boot=1, rng=np.random.default_rng(0)
    )["overall"]
    return {"rank1": result["rank1"], "mAP": result["mAP"]}


@dataclass
class RowResult:
    row: str
    metrics: dict[str, dict[str, float]]  # dataset -> rank1, mAP
    embed_s: float
    models: list[TrainedModel]
    changes: list[str]


def evaluate_row(
    row: str,
    models_by_dataset: dict[str, nn.Module],
    test_sets: dict[str, ReidDataset],
    args: argparse.Namespace,
) -> tuple[dict[str, dict[str, float]], float]:
    metrics, started = {}, time.perf_counter()
    for dataset, test_set in test_sets.items():
        metrics[dataset] = retrieval(models_by_dataset[dataset].to(args.device), test_set, args)
    log(f"{row}: " + ", ".join(f"{d} rank-1 {m['rank1']:.3f}" for d, m in metrics.items()))
    return metrics, time.perf_counter() - started


def run_row(
    row: str,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    test_sets: dict[str, ReidDataset],
    args: argparse.Namespace,
) -> RowResult:
    from reid_model.checkpoint import load_checkpoint
    from reid_model.mfm import load_mfm
    from reid_model.model import MaMI

    datasets = list(test_sets)
    models: list[TrainedModel] = []
    changes: list[str] = []
    if row == "pixels":
        shared: nn.Module = PixelEmbedder()
        by_dataset = dict.fromkeys(datasets, shared)
    elif row == "random-vit":
        torch.manual_seed(train_cfg.seed)
        shared = MaMI(model_cfg, load_init=False)  # never the init checkpoint: random weights
        by_dataset = dict.fromkeys(datasets, shared)
    elif row == "phantom-mfm":
        shared = MFMEmbedder(load_mfm("phantom-mfm", model_cfg.preprocess))
        by_dataset = dict.fromkeys(datasets, shared)
    else:
        variant = variant_config(model_cfg, row)
        changes = config_changes(model_cfg.to_dict(), variant.to_dict())
        models = train_row(row, variant, train_cfg, args)
        loaded = {m.name: load_checkpoint(m.checkpoint, device=args.device)[0] for m in models}
        if row == "single":
            missing = [d for d in datasets if d not in loaded]
            if missing:
                raise AblationError(
                    f"the test data has dataset(s) {missing} that the training data lacks; "
                    "`single` has no model for them"
                )
            by_dataset = {d: loaded[d] for d in datasets}
        else:
            by_dataset = dict.fromkeys(datasets, loaded["all"])
    metrics, embed_s = evaluate_row(row, by_dataset, test_sets, args)
    return RowResult(row, metrics, embed_s, models, changes)


# ---------------------------------------------------------------------------------------------
# report


def _secs(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def budget_statement(results: list[RowResult], train_cfg: TrainConfig, args) -> str:
    trained = [r for r in results if r.models]
    if not trained:
        return "No trained row was run."
    epochs = {m.epochs for r in trained for m in r.models}
    seeds = {m.seed for r in trained for m in r.models}
    images = {r.row: sum(m.images for m in r.models) for r in trained}
    batch = train_cfg.batch_p * train_cfg.batch_k
    # `single` rounds each per-dataset model's epoch up to whole batches
    slack = batch * max(len(r.models) for r in trained) * max(epochs)
    same = (
        len(epochs) == 1
        and len(seeds) == 1
        and max(images.values()) - min(images.values()) <= slack
    )
    seen = ", ".join(f"`{row}` {n:,}" for row, n in images.items())
    if same:
        return (
            f"Every trained row had the same budget: {epochs.pop()} epoch(s), seed {seeds.pop()}, "
            f"the train split of `{args.train_data}`, batches of {train_cfg.batch_p} x "
            f"{train_cfg.batch_k}; training images seen: {seen} (equal up to rounding to whole "
            "batches of the per-dataset models of `single`)."
        )
    return (
        f"Trained rows did NOT have the same budget: epochs {sorted(epochs)}, seeds "
        f"{sorted(seeds)}, training images seen: {seen}."
    )


def machine_line(device: torch.device) -> str:
    return (
        f"{machine_name(device)}; {platform.platform()}; torch {torch.__version__}; "
        f"date {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    )


def report(
    results: list[RowResult],
    test_sets: dict[str, ReidDataset],
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    args: argparse.Namespace,
    command: str,
    data_s: float,
) -> str:
    datasets = list(test_sets)
    n_queries = {d: int(query_mask(s.entries).sum()) for d, s in test_sets.items()}
    n_images = sum(len(s) for s in test_sets.values())
    train_entries = split_entries(open_source(args.train_data), "train")
    header = ["row", "what"]
    for d in datasets:
        header += [f"{d} rank-1", f"{d} mAP"]
    header += ["mean rank-1", "mean mAP"]
    lines = [
        f"### reid_ablation: preset `{args.preset}`, {train_cfg.epochs} epoch(s), "
        f"{torch.device(args.device).type}",
        "",
        f"- command: `{command}`",
        f"- machine: {machine_line(torch.device(args.device))}",
        f"- training data: train split of `{args.train_data}` ({len(train_entries)} images of "
        f"{len({e.patient for e in train_entries})} patients); each trained row validates and "
        "calibrates on its val split",
        f"- test data: test split of `{args.test_data}` ({n_images} images; query patients per "
        f"dataset: {', '.join(f'{d} {n}' for d, n in n_queries.items())}); read and "
        f"preprocessed once in {data_s:.1f} s",
    ]
    if args.test_data.startswith("phantom:") and args.train_data.startswith("phantom:"):
        train_seed = open_source(args.train_data).seed  # type: ignore[attr-defined]
        test_seed = open_source(args.test_data).seed  # type: ignore[attr-defined]
        if train_seed != test_seed:
            lines.append(
                f"- the test patients come from a phantom world with seed {test_seed} (training: "
                f"seed {train_seed}): none of them was seen in training"
            )
        else:
            lines.append(
                f"- test and training data share phantom seed {test_seed}: the test split is "
                "patient-disjoint from the train split"
            )
    lines.append(f"- budget: {budget_statement(results, train_cfg, args)}")
    aligned = [r.row for r in results if r.row in ("mami", "mami-single-align")]
    if aligned and not model_cfg.mfm:
        lines.append(
            f"- note: preset `{args.preset}` names no frozen MFM (`mfm` is empty), so the "
            f"alignment loss of {', '.join(f'`{r}`' for r in aligned)} is 0: they train like "
            "`compa`"
        )
    lines += [
        "",
        "Retrieval within each dataset (one query visit per patient against the other visits "
        "and all other patients of that dataset); mean = unweighted mean over datasets.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * 2 + "---:|" * (len(header) - 2),
    ]
    for r in results:
        cells = [f"`{r.row}`", WHAT[r.row]]
        for d in datasets:
            cells += [f"{r.metrics[d]['rank1']:.3f}", f"{r.metrics[d]['mAP']:.3f}"]
        cells += [
            f"{np.mean([r.metrics[d]['rank1'] for d in datasets]):.3f}",
            f"{np.mean([r.metrics[d]['mAP'] for d in datasets]):.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Data and budget of each row (train s: the epochs' training time from the runs' "
        "history; wall s: the whole `train_reid` call, with data rendering, validation and "
        "checkpoints, in the invocation that trained it (reused: measured when it was trained; "
        "resumed: the last invocation only); embed s: embedding and scoring the test data):",
        "",
        "| row | models | trained on | epochs | train seed | steps | images seen | train s | wall s "
        "| embed s | config vs preset |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if r.models:
            data = (
                f"train split of `{args.train_data}`"
                if r.row != "single"
                else f"train split of `{args.train_data}`, per dataset"
            )
            walls = [m.wall_s for m in r.models]
            wall = None if any(w is None for w in walls) else sum(walls)  # type: ignore[misc]
            how = sorted({m.how for m in r.models})
            wall_cell = _secs(wall) + ("" if how == ["trained"] else f" ({', '.join(how)})")
            cells = [
                f"`{r.row}`",
                str(len(r.models)),
                data,
                str(r.models[0].epochs),
                str(r.models[0].seed),
                f"{sum(m.steps for m in r.models):,}",
                f"{sum(m.images for m in r.models):,}",
                _secs(sum(m.train_s for m in r.models)),
                wall_cell,
                _secs(r.embed_s),
                ", ".join(f"`{c}`" for c in r.changes) or "none",
            ]
        else:
            cells = [f"`{r.row}`", "–", "not trained", "–", "–", "–", "–", "–", "–"]
            cells += [_secs(r.embed_s), "–"]
        lines.append("| " + " | ".join(cells) + " |")
    if any(r.models for r in results):
        lines += ["", f"Run folders: `{args.runs}`."]
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# entry point


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="rows: " + ", ".join(ROWS),
    )
    add = parser.add_argument
    add("--preset", default="demo", help="preset name (test, demo, paper) or JSON file")
    add("--train-data", default="phantom:all:80:3:0", help="phantom spec of the training data")
    add("--test-data", default="phantom:all:250:3:7", help="data spec; its test split is used")
    add("--epochs", type=int, default=None, help="override the preset's epochs (every row)")
    add("--rows", default=",".join(ROWS), help="comma-separated rows to run (default: all)")
    add("--runs", type=Path, default=None, help="run folders (default: runs/ablation-<preset>)")
    add("--device", default=None, help="cpu or cuda (default: cuda when available)")
    add("--workers", type=int, default=0, help="DataLoader workers that render images")
    add("--batch-size", type=int, default=64, help="embedding batch size (images or slices)")
    add("--quiet", action="store_true", help="no training progress bars or epoch lines")
    add("--append", type=Path, default=None, help="markdown file to append the section to")
    args = parser.parse_args(argv)

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown or not rows:
        parser.error(f"unknown row(s) {unknown}; choose from {', '.join(ROWS)}")
    rows = [r for r in ROWS if r in rows]  # the table's order
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available on this machine; use --device cpu.", file=sys.stderr)
        return 2
    if args.runs is None:
        args.runs = Path("runs") / f"ablation-{Path(args.preset).stem}"

    model_cfg, train_cfg = load_preset(args.preset)
    if args.epochs is not None:
        train_cfg = dataclasses.replace(train_cfg, epochs=args.epochs)
    train_entries = split_entries(open_source(args.train_data), "train")  # fail early on bad specs
    if "single" in rows:
        phantom_parts(args.train_data)
    for row in rows:  # before any work: a --runs folder of another config fails now
        if row in TRAINED:
            write_preset(args.runs / row / "preset.json", variant_config(model_cfg, row), train_cfg)
    log(f"{len(train_entries)} training images; rows {', '.join(rows)}")

    started = time.perf_counter()
    source = open_source(args.test_data)
    entries = split_entries(source, "test")
    check_protocol(entries, "test")
    test_sets = {}
    for dataset in dict.fromkeys(e.dataset for e in entries):
        test_set = ReidDataset(
            source, [e for e in entries if e.dataset == dataset], model_cfg.preprocess
        )
        test_set.preload(args.workers)
        test_sets[dataset] = test_set
    data_s = time.perf_counter() - started
    log(f"test data: {len(entries)} images in {data_s:.1f} s")

    results = [run_row(row, model_cfg, train_cfg, test_sets, args) for row in rows]
    command = command_line("reid_ablation.py", argv)
    text = report(results, test_sets, model_cfg, train_cfg, args, command.strip(), data_s)
    publish(text, args.append)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
