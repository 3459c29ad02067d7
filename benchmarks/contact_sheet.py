"""Write docs/contact_sheet.png: 3 patients x 3 visits of every phantom dataset.

Usage: python benchmarks/contact_sheet.py [--seed 0] [--out docs/contact_sheet.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from reid_model.phantoms.display import display_slice
from reid_model.phantoms.generator import render
from reid_model.phantoms.types import DATASETS

TILE = 176
LABEL_W = 150
CAPTION_H = 16
GAP = 4

_SHORT = {
    "opacity": "opac",
    "nodule": "nod",
    "cardiomegaly": "cardio",
    "effusion": "eff",
    "ground_glass": "GGO",
    "microaneurysms": "MA",
    "haemorrhages": "haem",
    "exudates": "exud",
    "atrophy": "atroph",
    "lesion": "lesion",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/contact_sheet.png"))
    args = parser.parse_args()

    n_patients, n_visits = 3, 3
    cols = n_patients * n_visits
    width = LABEL_W + cols * (TILE + GAP) + GAP
    height = len(DATASETS) * (TILE + CAPTION_H + GAP) + 28
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    title = ImageFont.load_default(size=16)
    draw.text(
        (GAP, 6),
        f"mami-deid phantom patients (seed {args.seed}): columns = patient x visit; "
        "volumes show their middle slice",
        fill=(230, 230, 230),
        font=title,
    )
    for row, dataset in enumerate(DATASETS):
        top = 28 + row * (TILE + CAPTION_H + GAP)
        draw.text((GAP, top + TILE // 2 - 8), dataset, fill=(255, 255, 160), font=title)
        for p in range(n_patients):
            for v in range(n_visits):
                image = render(dataset, p, v, args.seed)
                tile = Image.fromarray(display_slice(image)).resize(
                    (TILE, TILE), Image.Resampling.LANCZOS
                )
                left = LABEL_W + (p * n_visits + v) * (TILE + GAP)
                sheet.paste(tile, (left, top + CAPTION_H))
                found = ",".join(_SHORT[k] for k, on in image.findings.items() if on) or "-"
                draw.text(
                    (left + 2, top),
                    f"P{p} V{v} {image.view_position or image.laterality or ''} {found}",
                    fill=(200, 220, 255) if p % 2 == 0 else (255, 210, 190),
                    font=font,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({width}x{height})")


if __name__ == "__main__":
    main()
