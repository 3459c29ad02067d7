"""Evaluation of a re-identifier on patient-disjoint data, per dataset.

Protocol: within each dataset one visit of every patient is its query and the other visits form
the gallery (``reid_model.phantoms.protocol.query_gallery``); retrieval is scored with CMC
rank-1/5/10 and mAP, verification (query-gallery pairs, cosine similarity) with ROC AUC and TAR at
FAR 1e-3, each with a 95% bootstrap interval over query patients. Validation during training
uses the same protocol on the val split, and fits the similarity -> P(same patient) calibration.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deid.errors import InputError
from reid_model.data import ImageEntry, ReidDataset, open_source, split_entries

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"


def query_mask(entries: Sequence[ImageEntry]) -> np.ndarray:
    """Boolean mask of the query images: one visit per patient, chosen by the phantom protocol
    (a stable hash of the patient key); patients with a single visit stay in the gallery as
    distractors."""
    from reid_model.phantoms.protocol import query_gallery

    chosen = query_gallery([(e.patient, e.visit) for e in entries]).query
    mask = np.zeros(len(entries), dtype=bool)
    mask[list(chosen)] = True
    return mask


def check_protocol(entries: Sequence[ImageEntry], split: str) -> None:
    """Raise :class:`InputError` unless every dataset of ``entries`` has a query with a match
    and at least two patients (verification needs same- and different-patient pairs)."""
    is_query = query_mask(entries)
    for dataset in sorted({e.dataset for e in entries}):
        rows = [i for i, e in enumerate(entries) if e.dataset == dataset]
        patients = {entries[i].patient for i in rows}
        if len(patients) < 2 or not is_query[rows].any():
            raise InputError(
                f"the {split!r} split of {dataset} has {len(patients)} patient(s) and "
                f"{int(is_query[rows].sum())} with several visits; evaluation needs at least 2 "
                "patients, some with 2 or more visits: generate more patients or visits"
            )


@torch.no_grad()
def embed(
    model: nn.Module,
    dataset: ReidDataset,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> np.ndarray:
    """L2-normalised embeddings of every item of ``dataset``, in order, as float32 (N, E).

    Consecutive items of the same shape share a batch (of at most ``batch_size`` images or
    slices), so volumes of different depth and 2D images can be mixed.
    """
    was_training = model.training
    model.eval()
    device = torch.device(device)
    chunks: list[np.ndarray] = []
    pending: list[torch.Tensor] = []

    def flush() -> None:
        if pending:
            x = torch.stack(pending).to(device)
            emb = model(x)["embedding"].float()
            chunks.append(torch.nn.functional.normalize(emb, dim=1).cpu().numpy())
            pending.clear()

    for i in range(len(dataset)):
        x = dataset[i].pixels
        per_batch = max(1, batch_size // x.shape[0]) if x.ndim == 4 else batch_size  # in slices
        if pending and (x.shape != pending[0].shape or len(pending) >= per_batch):
            flush()
        pending.append(x)
    flush()
    model.train(was_training)
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def query_gallery_pairs(
    emb: np.ndarray, pids: np.ndarray, is_query: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities and same-patient flags of every query-gallery pair within a group."""
    scores, same = [], []
    for group in np.unique(groups):
        q = np.flatnonzero(is_query & (groups == group))
        g = np.flatnonzero(~is_query & (groups == group))
        if len(q) == 0 or len(g) == 0:
            continue
        scores.append((emb[q] @ emb[g].T).ravel())
        same.append((pids[q][:, None] == pids[g][None, :]).ravel())
    if not scores:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=bool)
    return np.concatenate(scores), np.concatenate(same)


def validate(model: nn.Module, val_set: ReidDataset, device: torch.device | str = "cpu"):
    """Rank-1 and mAP per dataset on the val split, and a calibrator fitted on its pairs.

    Returns
    -------
    metrics : dict
        ``{"overall" | dataset: {"rank1": float, "mAP": float, "n_queries": int}}``.
    calibrator : Calibrator or None
        Isotonic fit of P(same patient | cosine similarity) on the query-gallery pairs of each
        dataset; None when the split lacks pairs of either kind.
    """
    from reid_model.calibration import Calibrator

    emb = embed(model, val_set, device)
    pids, is_query, groups = _protocol(val_set)
    # one resample: validation reports point estimates only
    results = _retrieval(emb, pids, is_query, groups, n_boot=1, rng=np.random.default_rng(0))
    metrics = {
        name: {"rank1": r["rank1"], "mAP": r["mAP"], "n_queries": r["n_queries"]}
        for name, r in results.items()
    }
    scores, same = query_gallery_pairs(emb, pids, is_query, groups)
    calibrator = None
    if same.any() and (~same).any():
        calibrator = Calibrator()
        calibrator.fit(scores, same, method="isotonic")
    return metrics, calibrator


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str,
    *,
    split: str = "test",
    n_boot: int = 1000,
    seed: int = 0,
    device: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
) -> dict:
    """Evaluate a saved re-identifier on one split of some data, per dataset.

    Parameters
    ----------
    checkpoint : str or Path
        A checkpoint folder (``reid_model.checkpoint``) or a shipped checkpoint's name.
    data : str
        A data spec accepted by :func:`reid_model.data.open_source`.
    split : {"train", "val", "test"}
        Which patients to evaluate on; "test" is disjoint from training and validation.
    n_boot : int
        Bootstrap resamples of query patients for the 95% intervals (at least 1).
    seed : int
        Seed of the bootstrap.
    device : str, optional
        "cpu" or "cuda"; the GPU when available by default.
    batch_size, num_workers : int
        Embedding batch size; DataLoader workers that read and preprocess images.

    Returns
    -------
    dict
        ``{"checkpoint", "data", "split", "n_boot", "seed", "datasets": {name: metrics}}`` with
        one entry per dataset and ``"overall"`` (all queries against all gallery images);
        metrics are those of ``reid_model.metrics.evaluate_retrieval``: rank1, rank5, rank10,
        mAP, auc, tar_at_far (FAR 1e-3), their ``ci95`` intervals, counts and the ROC curve.

    Raises
    ------
    InputError
        Bad data spec or a split without images.
    CheckpointError
        The checkpoint cannot be loaded.
    """
    from reid_model.checkpoint import load_checkpoint

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, cfg, _ = load_checkpoint(resolve_checkpoint(checkpoint), device=dev)
    source = open_source(data)
    entries = split_entries(source, split)
    check_protocol(entries, split)
    dataset = ReidDataset(source, entries, cfg.preprocess)
    dataset.preload(num_workers)
    emb = embed(model, dataset, dev, batch_size)
    pids, is_query, groups = _protocol(dataset)
    rng = np.random.default_rng(seed)
    results = _retrieval(emb, pids, is_query, groups, n_boot=n_boot, rng=rng)
    return {
        "checkpoint": str(checkpoint),
        "data": data,
        "split": split,
        "n_boot": n_boot,
        "seed": seed,
        "datasets": results,
    }


def resolve_checkpoint(checkpoint: str | Path) -> Path:
    """A checkpoint folder path, or the name of one shipped in ``reid_model/weights``
    (``mami-demo``, ``attacker-demo``) when no folder of that name exists here."""
    path = Path(checkpoint).expanduser()
    shipped = SHIPPED_DIR / str(checkpoint)
    if not path.exists() and Path(checkpoint).name == str(checkpoint) and shipped.is_dir():
        return shipped
    return path


def _protocol(dataset: ReidDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pids = np.asarray(dataset.labels, dtype=np.int64)
    groups = np.asarray([e.dataset for e in dataset.entries])
    return pids, query_mask(dataset.entries), groups


def _retrieval(
    emb: np.ndarray,
    pids: np.ndarray,
    is_query: np.ndarray,
    groups: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
) -> dict[str, dict]:
    """``{"overall": metrics, dataset: metrics, ...}`` from ``evaluate_retrieval``, as JSON."""
    from reid_model.metrics import evaluate_retrieval

    results = evaluate_retrieval(emb, pids, is_query, groups=groups, n_boot=n_boot, rng=rng)
    merged = {"overall": results["overall"], **results["groups"]}
    return {str(name): _jsonable(values) for name, values in merged.items()}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
