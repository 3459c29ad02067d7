"""Privacy-utility frontier of the pixel scrub (issue 6), judged honestly.

On one split of phantom (or ``deid synth``) data, for each strength in a sweep, every image is
scrubbed against the white-box re-identifier(s) and then judged by:

(a) the white-box re-identifier: rank-1 and verification AUC;
(b) an independent attacker (another checkpoint, never used by the scrub);
(c) an adaptive attacker: the independent attacker fine-tuned (batch-hard soft-margin triplet
    loss, P x K batches) on scrubbed images of the *train* split, tested on the scrubbed split;
(d) a diagnosis classifier not used by the scrub: ROC AUC per (dataset, finding) and its mean,
    on scrubbed versus original images;
(e) SSIM and PSNR against the original (in the [0, 1] scaled domain).

Queries are scrubbed; the gallery is the original images (linking a released image to an
identified one held elsewhere) and, as ``*_within``, the scrubbed images (linking inside the
release). Rank-1 and AUC are taken within each dataset and averaged over datasets. Strength
``none`` is the unscrubbed baseline. ``--summary`` writes what the scrub report quotes
(``deid/scrub/frontier_measured.json``).

    python benchmarks/scrub_frontier.py --reid mami-demo --attacker attacker-demo \
        --diagnosis reid_model/weights/phantom-diagnosis --data phantom:all:30:3:0 \
        --strengths none,low,medium,high --device cuda --out /tmp/frontier.json \
        --plot benchmarks/scrub_frontier.png --append /tmp/scrub_pixels.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from deid.scrub.optimizer import PixelMetrics, scrub_batch
from deid.scrub.pixel_adversary import Adversary, load_adversary
from deid.scrub.pixel_cleaner import ReferenceBank, record_seed
from deid.scrub.pixel_settings import PixelSettings, parse_overrides, settings_for
from reid_model.checkpoint import load_checkpoint
from reid_model.data import ImageEntry, ImageSource, open_source, split_entries
from reid_model.evaluate import check_protocol, query_mask, resolve_checkpoint
from reid_model.losses import triplet_loss
from reid_model.metrics import evaluate_retrieval
from reid_model.model import MaMI
from reid_model.preprocess import preprocess
from reid_model.sampler import PKSampler

Images = list[tuple[np.ndarray, str]]  # (pixels in modality units, modality)


def load_split(
    source: ImageSource, split: str, max_images: int | None, patients: int | None = None
) -> tuple[list, Images]:
    """Entries and pixels of ``split``: the first ``max_images`` entries, or every image of the
    first ``patients`` patients (sorted) of each dataset."""
    entries = split_entries(source, split)
    if patients is not None:
        by_dataset: dict[str, set[str]] = {}
        for e in entries:
            by_dataset.setdefault(e.dataset, set()).add(e.patient)
        chosen = {(d, p) for d, names in by_dataset.items() for p in sorted(names)[:patients]}
        entries = [e for e in entries if (e.dataset, e.patient) in chosen]
    if max_images is not None:
        entries = entries[:max_images]
    check_protocol(entries, split)
    return entries, [source.load(e) for e in entries]


def patient_key(entry: ImageEntry) -> str:
    return f"{entry.dataset}/{entry.patient}"


def image_key(entry: ImageEntry) -> str:
    return f"{entry.dataset}/{entry.patient}/{entry.visit}"


def reference_bank(
    images: Images, entries: Sequence[ImageEntry], adversary: Adversary
) -> ReferenceBank:
    """What ``deid scrub`` embeds first: every image of the split, grouped by patient."""
    items = (
        (image_key(e), patient_key(e), pixels, modality)
        for e, (pixels, modality) in zip(entries, images, strict=True)
    )
    return ReferenceBank.from_images(items, adversary)


def scrub_all(
    images: Images,
    entries: Sequence[ImageEntry],
    adversary: Adversary,
    settings: PixelSettings,
    seed: int,
    batch: int,
    bank: ReferenceBank | None = None,
) -> tuple[Images, list[PixelMetrics]]:
    """Scrub every image (rounded to the integer grid of the phantom files), batching images
    of one shape and modality together; with ``bank``, each image also gets its patient's
    context in the split (other images, decoy, modality centre), as ``deid scrub`` does with the
    release."""
    groups: dict[tuple, list[int]] = {}
    for i, (pixels, modality) in enumerate(images):
        groups.setdefault((pixels.shape, modality), []).append(i)
    out: list = [None] * len(images)
    for (_, modality), indices in sorted(groups.items(), key=lambda g: g[1][0]):
        for start in range(0, len(indices), batch):
            chunk = indices[start : start + batch]
            key = image_key(entries[chunk[0]])
            generator = torch.Generator().manual_seed(record_seed(seed, key))
            contexts = None
            if bank is not None:
                contexts = [
                    bank.context_of(
                        image_key(entries[i]),
                        patient_key(entries[i]),
                        modality,
                        with_decoy=settings.lambda_decoy > 0,
                    )
                    for i in chunk
                ]
            results = scrub_batch(
                [images[i][0] for i in chunk],
                modality,
                adversary,
                settings,
                generator,
                quantisers=[np.rint] * len(chunk),
                contexts=contexts,
            )
            for i, result in zip(chunk, results, strict=True):
                out[i] = result
    return [(new, images[i][1]) for i, (new, _) in enumerate(out)], [m for _, m in out]


@torch.no_grad()
def embed_images(model: MaMI, images: Images, device: torch.device) -> np.ndarray:
    rows = []
    for pixels, modality in images:
        x = preprocess(pixels, modality, model.cfg.preprocess).to(device)
        rows.append(model.embed(x.unsqueeze(0))[0].cpu().numpy())
    return np.stack(rows)


def retrieval(
    query_emb: np.ndarray, gallery_emb: np.ndarray, entries: Sequence[ImageEntry]
) -> dict[str, float]:
    """Rank-1, verification AUC and chance rank-1 with scrubbed queries against the given
    gallery rows, each the mean over datasets of its value within the dataset: images of other
    modalities are never confused, and their pairs would make the AUC look better than it is."""
    is_query = query_mask(entries)
    emb = np.where(is_query[:, None], query_emb, gallery_emb)
    pids = np.asarray([e.patient for e in entries])
    groups = np.asarray([e.dataset for e in entries])
    per_dataset = evaluate_retrieval(emb, pids, is_query, groups=groups, n_boot=1)["groups"]
    gallery = {g: len(set(pids[~is_query & (groups == g)].tolist())) for g in per_dataset}
    return {
        "rank1": float(np.mean([v["rank1"] for v in per_dataset.values()])),
        "auc": float(np.mean([v["auc"] for v in per_dataset.values()])),
        "rank1_chance": float(np.mean([1.0 / n for n in gallery.values()])),
        "per_dataset_rank1": {g: float(v["rank1"]) for g, v in per_dataset.items()},
        "per_dataset_auc": {g: float(v["auc"]) for g, v in per_dataset.items()},
    }


def judge(model: MaMI, original: Images, scrubbed: Images, entries, device) -> dict:
    orig = embed_images(model, original, device)
    new = embed_images(model, scrubbed, device)
    cross = retrieval(new, orig, entries)
    within = retrieval(new, new, entries)
    return {**cross, "rank1_within": within["rank1"], "auc_within": within["auc"]}


def adapt_attacker(
    folder: Path,
    images: Images,
    entries: Sequence[ImageEntry],
    steps: int,
    device: torch.device,
    seed: int,
    p: int = 8,
    k: int = 2,
    lr: float = 1e-4,
) -> MaMI:
    """Fine-tune the attacker on scrubbed training images (volumes: their centre slice)."""
    model, cfg, _ = load_checkpoint(folder, device=device)
    tensors = []
    for pixels, modality in images:
        x = preprocess(pixels, modality, cfg.preprocess)
        tensors.append(x[x.shape[0] // 2] if x.dim() == 4 else x)
    names = sorted({e.patient for e in entries})
    labels = [names.index(e.patient) for e in entries]
    generator = torch.Generator().manual_seed(seed)
    sampler = PKSampler(labels, min(p, len(names)), k, steps, generator)
    order = list(iter(sampler))
    optimiser = torch.optim.AdamW(
        [q for q in model.parameters() if q.requires_grad], lr=lr, weight_decay=1e-4
    )
    model.train()
    batch = sampler.p * sampler.k
    for start in range(0, len(order), batch):
        index = order[start : start + batch]
        x = torch.stack([tensors[i] for i in index]).to(device)
        y = torch.tensor([labels[i] for i in index], device=device)
        loss = triplet_loss(model(x)["feat"], y, margin=0.0)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return model.eval()


@torch.no_grad()
def diagnosis_auc(folder: Path, images: Images, entries, device) -> tuple[float, dict]:
    """Mean ROC AUC over (dataset, finding) pairs that have both classes, and the AUC of each
    pair (``{dataset: {finding: auc}}``)."""
    from reid_model.train_mfm import finding_aucs, finding_targets, load_diagnosis

    model, cfg, _ = load_diagnosis(folder, device)
    scores = []
    for pixels, modality in images:
        x = preprocess(pixels, modality, cfg).to(device).unsqueeze(0)
        scores.append(torch.sigmoid(model(x))[0].cpu().numpy())
    targets, mask = finding_targets(entries, model.findings)
    aucs = finding_aucs(
        np.stack(scores),
        targets.numpy(),
        mask.numpy(),
        [e.dataset for e in entries],
        model.findings,
    )
    values = [v for per in aucs.values() for v in per.values()]
    per_finding = {d: {f: float(v) for f, v in per.items()} for d, per in aucs.items()}
    return (float(np.mean(values)) if values else float("nan")), per_finding


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    reid = [resolve_checkpoint(c) for c in args.reid]
    adversary = load_adversary(reid, args.mfm, device, args.bf16)
    whitebox = adversary.reidentifiers[0]
    attacker_dir = resolve_checkpoint(args.attacker) if args.attacker else None
    attacker = load_checkpoint(attacker_dir, device=device)[0] if attacker_dir else None
    source = open_source(args.data)
    entries, original = load_split(source, args.split, args.max_images)
    overrides = parse_overrides(args.set)
    bank = reference_bank(original, entries, adversary) if args.references else None
    base_diag, base_findings = (
        diagnosis_auc(args.diagnosis, original, entries, device) if args.diagnosis else (None, {})
    )
    train = None
    rows = []
    for strength in args.strengths:
        started = time.perf_counter()
        if strength == "none":
            scrubbed, metrics = original, []
        else:
            settings = settings_for(strength, **overrides)
            scrubbed, metrics = scrub_all(
                original, entries, adversary, settings, args.seed, args.batch, bank
            )
        seconds = time.perf_counter() - started
        row: dict = {"strength": strength, "images": len(entries)}
        if strength != "none":
            row["settings"] = settings.to_dict()
            row["seconds_per_image"] = seconds / len(entries)
            for name in ("ssim", "psnr", "reid_similarity_after", "mfm_similarity", "linf_unit"):
                values = [getattr(m, name) for m in metrics if getattr(m, name) is not None]
                row[name] = float(np.mean(values)) if values else None
        row["whitebox"] = judge(whitebox, original, scrubbed, entries, device)
        if attacker is not None:
            row["attacker"] = judge(attacker, original, scrubbed, entries, device)
        if attacker_dir is not None and strength != "none" and strength in args.adaptive:
            if train is None:
                train = load_split(source, "train", args.max_images, args.adapt_patients)
            t_entries, t_images = train
            t_bank = reference_bank(t_images, t_entries, adversary) if args.references else None
            t_scrubbed, _ = scrub_all(
                t_images, t_entries, adversary, settings, args.seed, args.batch, t_bank
            )
            adapted = adapt_attacker(
                attacker_dir, t_scrubbed, t_entries, args.adapt_steps, device, args.seed
            )
            row["adaptive"] = judge(adapted, original, scrubbed, entries, device)
        if args.diagnosis:
            auc, per_finding = (
                (base_diag, base_findings)
                if strength == "none"
                else diagnosis_auc(args.diagnosis, scrubbed, entries, device)
            )
            row["diagnosis_auc"], row["diagnosis_auc_drop"] = auc, base_diag - auc
            row["diagnosis_auc_per_finding"] = per_finding
        rows.append(row)
        print(json.dumps(_brief(row)), file=sys.stderr)
    return {
        "command": " ".join(sys.argv),
        "machine": f"{platform.platform()}, {platform.machine()}, device {device}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "data": args.data,
        "split": args.split,
        # as given on the command line (shipped names or paths), not this machine's resolution
        "reid": list(args.reid),
        "attacker": args.attacker,
        "references": args.references,
        "diagnosis_auc_original": base_diag,
        "rows": rows,
    }


def summary(result: dict) -> dict:
    """The scrubbed rows with the run's provenance: what ``deid.scrub.frontier`` ships so the
    scrub report can quote the measured figures of the settings it used."""
    judges = ("whitebox", "attacker", "adaptive")
    rows = [
        {
            "strength": row["strength"],
            "settings": row["settings"],
            "images": row["images"],
            "rank1_chance": row["whitebox"]["rank1_chance"],
            **{j: {m: row[j][m] for m in ("rank1", "auc")} for j in judges if j in row},
            **{k: row[k] for k in ("diagnosis_auc_drop", "ssim", "psnr") if row.get(k) is not None},
        }
        for row in result["rows"]
        if row["strength"] != "none"
    ]
    keys = ("command", "machine", "date", "data", "split", "reid", "attacker", "references")
    return {"source": {k: result[k] for k in keys}, "rows": rows}


def _brief(row: dict) -> dict:
    keep = {k: v for k, v in row.items() if not isinstance(v, dict)}
    for judge_name in ("whitebox", "attacker", "adaptive"):
        if judge_name in row:
            keep[judge_name] = {k: round(row[judge_name][k], 3) for k in ("rank1", "auc")}
    return keep


def _cell(row: dict, judge_name: str, metric: str) -> str:
    value = row.get(judge_name, {}).get(metric)
    return "" if value is None else f"{value:.3f}"


def markdown(result: dict) -> str:
    lines = [
        f"## Pixel scrub frontier ({result['data']}, split {result['split']})",
        "",
        "| strength | eps | steps | white-box rank-1 / AUC | attacker rank-1 / AUC | "
        "adaptive AUC | diag AUC (drop) | SSIM | PSNR dB | s/image |",
        "|---|---:|---:|---|---|---:|---|---:|---:|---:|",
    ]
    for row in result["rows"]:
        s = row.get("settings", {})
        diag = (
            f"{row['diagnosis_auc']:.3f} ({row['diagnosis_auc_drop']:+.3f})"
            if "diagnosis_auc" in row
            else ""
        )
        lines.append(
            f"| {row['strength']} | {s.get('epsilon', 0)} | {s.get('steps', 0)} | "
            f"{_cell(row, 'whitebox', 'rank1')} / {_cell(row, 'whitebox', 'auc')} | "
            f"{_cell(row, 'attacker', 'rank1')} / {_cell(row, 'attacker', 'auc')} | "
            f"{_cell(row, 'adaptive', 'auc')} | {diag} | "
            f"{row.get('ssim', 1.0):.3f} | {row.get('psnr') or float('inf'):.1f} | "
            f"{row.get('seconds_per_image', 0.0):.2f} |"
        )
    diag_rows = [r for r in result["rows"] if "diagnosis_auc_per_finding" in r]
    if diag_rows:
        lines += [
            "",
            "| diagnostic AUC | " + " | ".join(r["strength"] for r in diag_rows) + " |",
            "|---|" + "---:|" * len(diag_rows),
        ]
        for dataset, per in sorted(diag_rows[0]["diagnosis_auc_per_finding"].items()):
            for finding in sorted(per):
                cells = [r["diagnosis_auc_per_finding"][dataset][finding] for r in diag_rows]
                lines.append(
                    f"| {dataset} {finding} | " + " | ".join(f"{c:.3f}" for c in cells) + " |"
                )
    chance = result["rows"][0]["whitebox"]["rank1_chance"]
    lines += [
        "",
        f"- rank-1 and AUC: means over datasets, within each dataset; rank-1 chance level "
        f"{chance:.3f}; queries scrubbed, gallery original",
        f"- command: `{result['command']}`",
        f"- machine: {result['machine']}",
        f"- date: {result['date']}",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    use_diag = all("diagnosis_auc" in r for r in rows)
    xs = [r["diagnosis_auc"] if use_diag else r.get("ssim", 1.0) for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for judge_name, marker in (("whitebox", "o"), ("attacker", "s"), ("adaptive", "^")):
        points = [
            (x, r[judge_name]["auc"]) for x, r in zip(xs, rows, strict=True) if judge_name in r
        ]
        if points:
            ax.plot(*zip(*points, strict=True), marker=marker, label=judge_name)
    for x, r in zip(xs, rows, strict=True):
        ax.annotate(r["strength"], (x, r["whitebox"]["auc"]), fontsize=8)
    ax.set_xlabel("diagnostic AUC (scrubbed)" if use_diag else "SSIM")
    ax.set_ylabel("re-identification verification AUC")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.legend()
    ax.set_title("privacy-utility frontier of the pixel scrub")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reid", nargs="+", required=True, help="white-box checkpoint(s)")
    parser.add_argument("--attacker", help="independent attacker checkpoint")
    parser.add_argument("--diagnosis", type=Path, help="diagnosis classifier checkpoint")
    parser.add_argument("--mfm", nargs="*", default=None, help="MFM specs (default: from --reid)")
    parser.add_argument("--data", default="phantom:all:30:3:0")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--strengths", type=lambda s: s.split(","), default="none,low,medium,high")
    parser.add_argument("--adaptive", type=lambda s: s.split(","), default="medium")
    parser.add_argument("--adapt-steps", type=int, default=200)
    parser.add_argument(
        "--adapt-patients",
        type=int,
        help="training patients per dataset the adaptive attacker sees scrubbed (default: all)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a pixel setting of every strength (deid.scrub.pixel_settings); repeat",
    )
    parser.add_argument(
        "--no-references",
        dest="references",
        action="store_false",
        help="push each image away from its own original only, not also from its patient's "
        "other images in the split (which deid scrub does with the release)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16, help="images scrubbed together")
    parser.add_argument("--bf16", action="store_true", help="models under bf16 autocast (CUDA)")
    parser.add_argument("--out", type=Path, help="write the full result as JSON")
    parser.add_argument("--plot", type=Path, help="write the frontier figure (PNG)")
    parser.add_argument("--append", type=Path, help="append a markdown record")
    parser.add_argument(
        "--summary",
        type=Path,
        help="write the measured rows for the scrub report (deid/scrub/frontier_measured.json)",
    )
    args = parser.parse_args(argv)
    for name in ("strengths", "adaptive"):
        if isinstance(getattr(args, name), str):
            setattr(args, name, getattr(args, name).split(","))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        plot(result, args.plot)
    if args.summary:
        args.summary.write_text(json.dumps(summary(result), indent=1) + "\n")
    text = markdown(result)
    print(text)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as handle:
            handle.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
