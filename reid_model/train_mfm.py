"""Training of the two auxiliary phantom models.

* ``mfm``: the phantom medical foundation model (MFM), the frozen encoder whose features the
  re-identifier aligns with and the scrubber preserves. Trained on phantom findings
  (multi-label BCE) and modality (cross-entropy), never on identity.
* ``diagnosis``: an independent findings classifier (its own small CNN, trained apart) that judges
  the diagnostic utility of scrubbed images; it never guides a scrub.

Both learn from the same data specs as the re-identifier (:func:`reid_model.data.open_source`),
keep patient-disjoint splits, report per-(dataset, finding) ROC AUC on the val split after every
epoch, and checkpoint every epoch with the same run folder layout as :mod:`reid_model.train`.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from deid.errors import CheckpointError, InputError
from reid_model.data import ImageEntry, ReidDataset, augment, open_source, split_entries
from reid_model.train import (
    commit_epoch,
    latest_epoch_dir,
    load_train_state,
    prepare_run_dir,
    warmup_cosine,
)

AuxTask = Literal["mfm", "diagnosis"]
DIAGNOSIS_KIND = "phantom-diagnosis"
# DICOM modality -> modality class of the MFM's modality head (two radiograph sites, one class)
MODALITY_CLASSES: dict[str, str] = {"CR": "XR", "DX": "XR", "CT": "CT", "OP": "OP", "MR": "MR"}


@dataclass(frozen=True)
class AuxTrainConfig:
    """Optimisation and size of an auxiliary model."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    img_size: int  # preprocessed input side
    width: int  # diagnosis CNN: channels of the first stage (doubles per stage)
    seed: int
    # phantom MFM ViT
    patch_size: int = 8
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    stem: str = "patch"


# per preset name; the diagnosis model uses another seed than the MFM by default
AUX_PRESETS: dict[str, AuxTrainConfig] = {
    "test": AuxTrainConfig(
        epochs=1,
        batch_size=8,
        lr=1e-3,
        weight_decay=1e-4,
        warmup_epochs=0,
        img_size=32,
        width=8,
        seed=0,
        embed_dim=32,
        depth=1,
        num_heads=2,
    ),
    # 128 px: at 64 px the small findings (nodules, microaneurysms) are a pixel or two wide
    "demo": AuxTrainConfig(
        epochs=12,
        batch_size=32,
        lr=1e-3,
        weight_decay=1e-4,
        warmup_epochs=1,
        img_size=128,
        width=16,
        seed=0,
        patch_size=16,
        stem="conv",
    ),
    "paper": AuxTrainConfig(
        epochs=30,
        batch_size=64,
        lr=5e-4,
        weight_decay=1e-4,
        warmup_epochs=2,
        img_size=128,
        width=48,
        seed=0,
        patch_size=16,
        embed_dim=256,
        depth=6,
        num_heads=4,
        stem="conv",
    ),
}


@dataclass(frozen=True)
class AuxTrainOptions:
    """What an auxiliary training run is asked to do; ``None`` fields keep the preset's value."""

    task: AuxTask
    data: str
    out: Path
    preset: str = "demo"
    resume: bool = False
    epochs: int | None = None
    seed: int | None = None
    device: str | None = None
    num_workers: int = 0
    quiet: bool = False


# ---------------------------------------------------------------------------------------------
# the diagnosis classifier


class DiagnosisNet(nn.Module):
    """A small VGG-style CNN with one logit per finding.

    Volumes (B, S, 3, H, W) are scored slice by slice and max-pooled over slices: a finding seen
    in any slice is a finding of the volume.

    Parameters
    ----------
    findings : sequence of str
        Output names, one logit each.
    width : int
        Channels of the first of four stages; each stage doubles them.
    """

    def __init__(self, findings: Sequence[str], width: int = 24) -> None:
        super().__init__()
        self.findings = tuple(findings)
        self.width = width
        layers: list[nn.Module] = []
        channels = 3
        for stage in range(4):
            out = width * 2**stage
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.Conv2d(out, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, len(self.findings))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            b, s = x.shape[:2]
            return self.forward(x.flatten(0, 1)).view(b, s, -1).amax(dim=1)
        if x.ndim != 4:
            raise ValueError(f"expected (B, 3, H, W) or (B, S, 3, H, W), got {tuple(x.shape)}")
        return self.classifier(self.features(x))


def save_diagnosis(folder: Path, model: DiagnosisNet, preprocess_cfg, extra: dict) -> None:
    """Write ``model`` as a checkpoint folder (``model.safetensors`` + ``config.json``, the
    layout of ``reid_model.checkpoint``, kind ``phantom-diagnosis``)."""
    from reid_model.checkpoint import FORMAT_VERSION, write_weights_dir

    meta = {
        "kind": DIAGNOSIS_KIND,
        "format_version": FORMAT_VERSION,
        "findings": list(model.findings),
        "width": model.width,
        "preprocess": preprocess_cfg.to_dict(),
        "extra": extra,
    }
    write_weights_dir(folder, model.state_dict(), meta)


def load_diagnosis(folder: str | Path, device: str | torch.device = "cpu"):
    """Load a diagnosis classifier saved by :func:`save_diagnosis`.

    Returns
    -------
    model : DiagnosisNet
        In eval mode on ``device``; ``model(x)`` gives one logit per ``model.findings``.
    preprocess_cfg : PreprocessConfig
        How its inputs must be preprocessed (``reid_model.preprocess.preprocess``).
    meta : dict
        The checkpoint's ``config.json`` (findings, validation AUCs in ``extra``).

    Raises
    ------
    CheckpointError
        Missing or corrupt files, another kind of checkpoint, or weights that do not fit.
    """
    from reid_model.checkpoint import load_state_strictly, read_weights_dir
    from reid_model.config import PreprocessConfig

    state, meta = read_weights_dir(folder, DIAGNOSIS_KIND)
    try:
        model = DiagnosisNet(meta["findings"], int(meta["width"]))
        preprocess_cfg = PreprocessConfig.from_dict(meta["preprocess"])
    except (KeyError, TypeError, ValueError, InputError) as exc:
        raise CheckpointError(
            f"{folder}: invalid diagnosis checkpoint config ({exc}); retrain it with "
            "`deid train --task diagnosis`"
        ) from exc
    load_state_strictly(model, state, str(folder))
    return model.to(device).eval(), preprocess_cfg, meta


# ---------------------------------------------------------------------------------------------
# labels


def finding_names(entries: Sequence[ImageEntry]) -> tuple[str, ...]:
    """Sorted union of the findings labelled in ``entries``."""
    return tuple(sorted({name for e in entries for name in e.findings}))


def finding_targets(
    entries: Sequence[ImageEntry], names: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, F) float targets and (N, F) bool mask of which findings each image is labelled for."""
    targets = torch.zeros(len(entries), len(names))
    mask = torch.zeros(len(entries), len(names), dtype=torch.bool)
    for i, e in enumerate(entries):
        for j, name in enumerate(names):
            if name in e.findings:
                mask[i, j] = True
                targets[i, j] = float(e.findings[name])
    return targets, mask


def modality_targets(entries: Sequence[ImageEntry], classes: Sequence[str]) -> torch.Tensor:
    """(N,) modality class per entry from its phantom dataset name; -1 when unknown."""
    from reid_model.phantoms import DATASETS

    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor(
        [index.get(MODALITY_CLASSES.get(DATASETS.get(e.dataset, ""), ""), -1) for e in entries]
    )


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the labelled (mask) entries only."""
    loss = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (loss * mask).sum() / mask.sum().clamp_min(1)


def finding_aucs(
    scores: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray,
    datasets: Sequence[str],
    names: Sequence[str],
) -> dict[str, dict[str, float]]:
    """ROC AUC per dataset and finding; pairs without both classes are left out."""
    from sklearn.metrics import roc_auc_score

    groups = np.asarray(datasets)
    out: dict[str, dict[str, float]] = {}
    for dataset in sorted(set(datasets)):
        rows = groups == dataset
        for j, name in enumerate(names):
            labelled = rows & mask[:, j]
            y = targets[labelled, j]
            if labelled.any() and 0 < y.sum() < len(y):
                auc = float(roc_auc_score(y, scores[labelled, j]))
                out.setdefault(dataset, {})[name] = auc
    return out


# ---------------------------------------------------------------------------------------------
# training


def train_auxiliary(options: AuxTrainOptions) -> Path:
    """Train the phantom MFM or the diagnosis classifier; return the final checkpoint folder.

    Parameters
    ----------
    options : AuxTrainOptions
        Task, data spec, run folder, preset (``test``, ``demo``, ``paper``) and overrides.

    Returns
    -------
    Path
        ``options.out / "model"``.

    Raises
    ------
    InputError
        Unknown preset or task, or data without findings labels.
    OutputError
        ``out`` already holds a run and ``resume`` is false, or differs from it.
    CheckpointError
        The last epoch cannot be loaded on ``resume``.
    """
    from reid_model.config import PreprocessConfig

    if options.task not in ("mfm", "diagnosis"):
        raise InputError(f"unknown auxiliary task {options.task!r}; use 'mfm' or 'diagnosis'")
    if options.preset not in AUX_PRESETS:
        raise InputError(
            f"no {options.task} preset {options.preset!r}; choose from {sorted(AUX_PRESETS)}"
        )
    cfg = AUX_PRESETS[options.preset]
    cfg = dataclasses.replace(
        cfg,
        **{
            k: v
            for k, v in {"epochs": options.epochs, "seed": options.seed}.items()
            if v is not None
        },
    )
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(options.out)
    run_info = {
        "task": options.task,
        "preset": options.preset,
        "data": options.data,
        "seed": cfg.seed,
        "train": dataclasses.asdict(cfg),
    }
    prepare_run_dir(out, run_info, options.resume)

    preprocess_cfg = PreprocessConfig(img_size=cfg.img_size, interpolation="bilinear")
    source = open_source(options.data)
    train_set = ReidDataset(source, split_entries(source, "train"), preprocess_cfg)
    val_set = ReidDataset(source, split_entries(source, "val"), preprocess_cfg)
    train_set.preload(options.num_workers)
    val_set.preload(options.num_workers)
    names = finding_names(train_set.entries)
    if not names:
        raise InputError(
            "the training images carry no findings labels; the MFM and diagnosis "
            "models learn from findings (phantom data or a truth CSV with findings)"
        )
    modalities = tuple(sorted(set(MODALITY_CLASSES.values())))

    torch.manual_seed(cfg.seed)
    model = _build(options.task, names, modalities, cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = len(_shape_batches(train_set, cfg.batch_size, torch.Generator().manual_seed(0)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg.warmup_epochs * steps, cfg.epochs * steps)
    )
    start, history = 0, []
    if options.resume:
        start, history = _restore(out, options.task, model, optimizer, scheduler, device)

    targets, mask = finding_targets(train_set.entries, names)
    modality = modality_targets(train_set.entries, modalities)
    for epoch in range(start, cfg.epochs):
        stats = _train_epoch(
            model,
            train_set,
            targets,
            mask,
            modality,
            optimizer,
            scheduler,
            cfg,
            epoch,
            device,
            options.quiet,
        )
        metrics = _validate(model, val_set, names, modalities, device)
        history.append({"epoch": epoch + 1, **stats, "val": metrics})
        if not options.quiet:
            print(
                f"epoch {epoch + 1}: loss {stats['loss']:.4f}  val mean AUC "
                f"{metrics['mean_auc']:.3f}",
                flush=True,
            )

        extra = {**run_info, "epoch": epoch + 1, "val": metrics}

        def write(folder: Path, extra: dict = extra) -> None:
            _save(options.task, folder, model, preprocess_cfg, extra)

        commit_epoch(out, epoch + 1, write, optimizer, scheduler, history)

    final = out / "model"
    last = latest_epoch_dir(out)
    if last is None:
        raise CheckpointError(f"{out} has no finished epoch; train with at least 1 epoch")
    tmp = out / ".partial-model"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(last, tmp, ignore=shutil.ignore_patterns("train_state.pt"))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def _build(
    task: str, names: tuple[str, ...], modalities: tuple[str, ...], cfg: AuxTrainConfig
) -> nn.Module:
    if task == "diagnosis":
        return DiagnosisNet(names, cfg.width)
    from reid_model.mfm import PhantomMFMConfig, PhantomMFMNet

    return PhantomMFMNet(
        PhantomMFMConfig(
            findings=names,
            modalities=modalities,
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            stem=cfg.stem,
        )
    )


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, F) findings logits, followed for the MFM by (B, M) modality logits."""
    if x.ndim == 5 and not isinstance(model, DiagnosisNet):
        # volumes: a finding in any slice is a finding of the volume; modality votes by mean
        b, s = x.shape[:2]
        out = model(x.flatten(0, 1))
        findings = out["findings_logits"].view(b, s, -1).amax(dim=1)
        return torch.cat([findings, out["modality_logits"].view(b, s, -1).mean(dim=1)], dim=1)
    out = model(x)
    if isinstance(out, dict):
        return torch.cat([out["findings_logits"], out["modality_logits"]], dim=1)
    return out


def _train_epoch(
    model: nn.Module,
    train_set: ReidDataset,
    targets: torch.Tensor,
    mask: torch.Tensor,
    modality: torch.Tensor,
    optimizer,
    scheduler,
    cfg: AuxTrainConfig,
    epoch: int,
    device: torch.device,
    quiet: bool,
) -> dict[str, float]:
    from tqdm.auto import tqdm

    epoch_seed = cfg.seed * 10_007 + epoch
    torch.manual_seed(epoch_seed)
    order_gen = torch.Generator().manual_seed(epoch_seed)
    augment_gen = torch.Generator().manual_seed(epoch_seed + 1_000_000_007)
    model.train()
    n_findings = targets.shape[1]
    total, steps, images, started = 0.0, 0, 0, time.perf_counter()
    batches = _shape_batches(train_set, cfg.batch_size, order_gen)
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=quiet, leave=False)
    for batch in bar:
        x = torch.stack([train_set[i].pixels for i in batch]).to(device)
        if x.ndim == 4:
            x = augment(x, augment_gen)
        logits = _logits(model, x)
        loss = masked_bce(logits[:, :n_findings], targets[batch].to(device), mask[batch].to(device))
        y = modality[batch].to(device)
        if logits.shape[1] > n_findings and bool((y >= 0).any()):  # the MFM's modality head
            loss = loss + nn.functional.cross_entropy(logits[:, n_findings:], y, ignore_index=-1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        scheduler.step()
        total += float(loss.detach())
        steps += 1
        images += len(batch)
        rate = images / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(loss=f"{total / steps:.4f}", **{"img/s": f"{rate:.1f}"})
    bar.close()
    elapsed = time.perf_counter() - started
    return {"loss": total / max(steps, 1), "images_per_s": images / max(elapsed, 1e-9)}


@torch.no_grad()
def _validate(
    model: nn.Module,
    val_set: ReidDataset,
    names: tuple[str, ...],
    modalities: tuple[str, ...],
    device: torch.device,
) -> dict:
    model.eval()
    scores = []
    for batch in _shape_batches(val_set, 32, None):
        x = torch.stack([val_set[i].pixels for i in batch]).to(device)
        scores.append((batch, _logits(model, x).float().cpu()))
    logits = torch.zeros(len(val_set), scores[0][1].shape[1]) if scores else torch.zeros(0, 0)
    for batch, values in scores:
        logits[batch] = values
    targets, mask = finding_targets(val_set.entries, names)
    aucs = finding_aucs(
        logits[:, : len(names)].numpy(),
        targets.numpy(),
        mask.numpy(),
        [e.dataset for e in val_set.entries],
        names,
    )
    values = [v for per in aucs.values() for v in per.values()]
    metrics: dict = {"auc": aucs, "mean_auc": float(np.mean(values)) if values else float("nan")}
    if logits.shape[1] > len(names):
        y = modality_targets(val_set.entries, modalities)
        known = y >= 0
        predicted = logits[:, len(names) :].argmax(dim=1)
        metrics["modality_accuracy"] = float((predicted[known] == y[known]).float().mean())
    return metrics


def _shape_batches(
    dataset: ReidDataset, batch_size: int, generator: torch.Generator | None
) -> list[list[int]]:
    """Batches of items with equal tensor shape (volumes differ in depth), shuffled when a
    generator is given, in input order otherwise."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i in range(len(dataset)):
        by_shape.setdefault(tuple(dataset.preprocessed(i).shape), []).append(i)
    batches: list[list[int]] = []
    for indices in by_shape.values():
        if generator is not None:
            indices = [indices[j] for j in torch.randperm(len(indices), generator=generator)]
        batches += [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    if generator is not None:
        batches = [batches[j] for j in torch.randperm(len(batches), generator=generator)]
    return batches


def _save(task: str, folder: Path, model: nn.Module, preprocess_cfg, extra: dict) -> None:
    if task == "diagnosis":
        save_diagnosis(folder, model, preprocess_cfg, extra)
    else:
        from reid_model.mfm import save_phantom_mfm

        save_phantom_mfm(folder, model, extra=extra)


def _restore(
    out: Path, task: str, model: nn.Module, optimizer, scheduler, device: torch.device
) -> tuple[int, list[dict]]:
    last = latest_epoch_dir(out)
    assert last is not None  # checked by prepare_run_dir
    try:
        if task == "diagnosis":
            saved, _, _ = load_diagnosis(last)
            model.load_state_dict(saved.state_dict())
        else:
            from reid_model.mfm import load_phantom_mfm

            model.load_state_dict(load_phantom_mfm(last).state_dict())
        return load_train_state(last, optimizer, scheduler, device)
    except (OSError, RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"cannot resume from {last}: {exc}; delete that run folder and train again"
        ) from exc
