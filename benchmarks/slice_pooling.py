"""Mean versus attention pooling of slice embeddings into a volume embedding (CT, MRI).

A trained checkpoint embeds every slice of every volume once (its ``feat``, before the BNNeck).
Mean pooling is what the checkpoint does by default; attention pooling is the model's own
``head.volume_pooling = "attention"`` head, a linear score per slice softmaxed over the volume,
fitted here on the frozen slice features of the fitting data's train split with the batch-hard
soft-margin triplet loss (P x K batches of patients) and started at zero, i.e. at mean pooling.
Both poolings are then judged on ``--data``'s test split (patients never seen in training) with
the evaluation protocol of ``deid evaluate``: per dataset rank-1, mAP and verification AUC.

This isolates the pooling from the backbone: the slice features are the same for both rows.
End-to-end training with attention pooling is not what it measures.

    python benchmarks/slice_pooling.py --checkpoint mami-demo \
        --fit-data phantom:chest_ct,brain_mri:200:3:0 --data phantom:chest_ct,brain_mri:250:3:7
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_report import command_line, machine_name, publish
from torch import Tensor, nn

from reid_model.checkpoint import load_checkpoint
from reid_model.data import ImageEntry, ImageSource, ReidDataset, open_source, split_entries
from reid_model.evaluate import check_protocol, query_mask, resolve_checkpoint
from reid_model.losses import triplet_loss
from reid_model.metrics import evaluate_retrieval
from reid_model.model import MaMI
from reid_model.sampler import PKSampler


@torch.no_grad()
def slice_features(
    model: MaMI, source: ImageSource, split: str, device: torch.device
) -> tuple[list[ImageEntry], list[Tensor]]:
    """The volumes of ``split`` (2-D images are left out) and, per volume, its slices' features
    (S, E) before the BNNeck: the slices go through the model as a batch of images."""
    dataset = ReidDataset(source, split_entries(source, split), model.cfg.preprocess)
    model.eval()
    entries, features = [], []
    for i, entry in enumerate(dataset.entries):
        x = dataset[i].pixels
        if x.dim() == 4:
            entries.append(entry)
            features.append(model(x.to(device))["feat"].float().cpu())
    if not entries:
        raise SystemExit(f"the {split} split has no volumes (use chest_ct and brain_mri data)")
    return entries, features


def pool(features: Sequence[Tensor], scorer: nn.Linear | None) -> Tensor:
    """(N, E) volume features: the mean of the slices, or their softmax(score)-weighted sum."""
    rows = []
    for f in features:
        if scorer is None:
            rows.append(f.mean(0))
        else:
            rows.append((scorer(f).squeeze(-1).softmax(0)[:, None] * f).sum(0))
    return torch.stack(rows)


def fit_attention(
    features: Sequence[Tensor],
    labels: Sequence[int],
    steps: int,
    seed: int,
    p: int = 16,
    k: int = 2,
    lr: float = 1e-2,
) -> nn.Linear:
    """Fit the slice scorer (zero-initialised: mean pooling) with the soft-margin triplet loss."""
    torch.manual_seed(seed)
    scorer = nn.Linear(features[0].shape[1], 1)
    nn.init.zeros_(scorer.weight)
    nn.init.zeros_(scorer.bias)
    generator = torch.Generator().manual_seed(seed)
    sampler = PKSampler(list(labels), min(p, len(set(labels))), k, steps, generator)
    order = list(iter(sampler))
    batch = sampler.p * sampler.k
    optimiser = torch.optim.AdamW(scorer.parameters(), lr=lr, weight_decay=1e-4)
    for start in range(0, len(order), batch):
        index = order[start : start + batch]
        pooled = pool([features[i] for i in index], scorer)
        loss = triplet_loss(pooled, torch.tensor([labels[i] for i in index]), margin=0.0)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return scorer.eval()


@torch.no_grad()
def judge(model: MaMI, pooled: Tensor, entries: Sequence[ImageEntry]) -> dict[str, dict]:
    """Rank-1, mAP and AUC per dataset of BNNeck-ed, L2-normalised pooled features."""
    emb = F.normalize(model.bnneck(pooled), dim=-1).numpy()
    result = evaluate_retrieval(
        emb,
        np.asarray([e.patient for e in entries]),
        query_mask(entries),
        groups=np.asarray([e.dataset for e in entries]),
        n_boot=1000,
    )
    return {
        group: {key: float(values[key]) for key in ("rank1", "mAP", "auc")}
        | {"rank1_ci": values["ci95"]["rank1"]}
        for group, values in result["groups"].items()
    }


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_checkpoint(resolve_checkpoint(args.checkpoint), device=device)[0].eval()
    fit_entries, fit_features = slice_features(model, open_source(args.fit_data), "train", device)
    test_entries, test_features = slice_features(model, open_source(args.data), "test", device)
    check_protocol(test_entries, "test")
    names = sorted({(e.dataset, e.patient) for e in fit_entries})
    labels = [names.index((e.dataset, e.patient)) for e in fit_entries]
    scorer = fit_attention(fit_features, labels, args.steps, args.seed)
    return {
        "command": command_line("slice_pooling.py", args.argv),
        "machine": machine_name(device),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "checkpoint": args.checkpoint,
        "fit_volumes": len(fit_entries),
        "test_volumes": len(test_entries),
        "rows": {
            "mean": judge(model, pool(test_features, None), test_entries),
            "attention": judge(model, pool(test_features, scorer), test_entries),
        },
    }


def markdown(result: dict) -> str:
    lines = [
        f"### slice_pooling: `{result['checkpoint']}`",
        "",
        f"- command: `{result['command']}`",
        f"- machine: {result['machine']}; date {result['date']}",
        f"- {result['fit_volumes']} training volumes fit the attention scorer; "
        f"{result['test_volumes']} test volumes judge both poolings",
        "",
        "| dataset | pooling | rank-1 [95% CI] | mAP | AUC |",
        "|---|---|---|---:|---:|",
    ]
    for dataset in sorted(result["rows"]["mean"]):
        for name, rows in result["rows"].items():
            r = rows[dataset]
            low, high = r["rank1_ci"]
            lines.append(
                f"| {dataset} | {name} | {r['rank1']:.3f} [{low:.2f}, {high:.2f}] "
                f"| {r['mAP']:.3f} | {r['auc']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="mami-demo")
    parser.add_argument("--fit-data", default="phantom:chest_ct,brain_mri:200:3:0")
    parser.add_argument("--data", default="phantom:chest_ct,brain_mri:250:3:7")
    parser.add_argument("--steps", type=int, default=300, help="P x K batches of fitting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="write the result as JSON")
    parser.add_argument("--append", type=Path, help="append the markdown record")
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    publish(markdown(result), args.append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
