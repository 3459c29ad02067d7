"""Vessel trees grown by a seeded branching process and drawn as anti-aliased polylines.

Used for retinal arcades (fundus) and pulmonary vessel markings (chest radiographs). The tree
topology is per-patient anatomy; a visit only changes how it is projected onto the detector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from reid_model.phantoms.common import SIZE, Pose, to_detector


@dataclass(frozen=True)
class Tree:
    """Line segments in patient coordinates: (n, 4) endpoints x0, y0, x1, y1 and (n,) widths."""

    segments: np.ndarray
    widths: np.ndarray


def grow_tree(
    rng: np.random.Generator,
    roots: list[tuple[float, float, float, float]],
    step: float,
    turn_sd: float,
    branch_prob: float,
    branch_angle: tuple[float, float],
    taper: float,
    min_width: float,
    bend: float = 0.0,
    bend_centre: tuple[float, float] = (0.0, 0.0),
) -> Tree:
    """Grow one tree per root ``(x, y, heading_rad, width)`` by a random walk that branches.

    Each step moves ``step`` along the heading, which turns by N(0, ``turn_sd``) and, when
    ``bend`` is non-zero, curls around ``bend_centre`` (retinal arcades wrap the macula).
    A branch takes a fraction of the width (Murray-like split) and leaves at an angle drawn from
    ``branch_angle``; a vessel ends when thinner than ``min_width`` or far outside the field.
    """
    segments: list[tuple[float, float, float, float]] = []
    widths: list[float] = []
    stack = list(roots)
    while stack and len(segments) < 4000:
        x, y, heading, width = stack.pop()
        while width >= min_width and abs(x) < 1.3 and abs(y) < 1.3:
            if bend:
                to_centre = np.arctan2(bend_centre[1] - y, bend_centre[0] - x)
                heading += bend * np.sin(to_centre - heading)
            heading += rng.normal(0.0, turn_sd)
            nx, ny = x + step * np.cos(heading), y + step * np.sin(heading)
            segments.append((x, y, nx, ny))
            widths.append(width)
            x, y = nx, ny
            width *= taper
            if rng.random() < branch_prob:
                side = 1.0 if rng.random() < 0.5 else -1.0
                share = rng.uniform(0.55, 0.8)
                stack.append((x, y, heading + side * rng.uniform(*branch_angle), width * share))
                width *= np.sqrt(1.0 - share**2) + 0.25
    return Tree(np.asarray(segments, np.float32).reshape(-1, 4), np.asarray(widths, np.float32))


def draw_tree(
    tree: Tree, pose: Pose, width_scale: float, size: int = SIZE, oversample: int = 2
) -> np.ndarray:
    """Rasterise a tree seen through ``pose`` into a [0, 1] float32 coverage map (size x size).

    Widths are in patient units (1 = half the image) and scale with the pose; drawing at
    ``oversample`` times the resolution and box-filtering gives anti-aliased lines.
    """
    big = size * oversample
    pts = tree.segments.reshape(-1, 2)
    det_x, det_y = to_detector(pose, pts[:, 0], pts[:, 1])
    px = ((det_x + 1.0) * 0.5 * big).reshape(-1, 2)
    py = ((det_y + 1.0) * 0.5 * big).reshape(-1, 2)
    pix_width = np.maximum(np.rint(tree.widths * width_scale * pose.scale * 0.5 * big), 1).astype(
        int
    )
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    for (x0, x1), (y0, y1), w in zip(px.tolist(), py.tolist(), pix_width.tolist(), strict=True):
        draw.line((x0, y0, x1, y1), fill=255, width=w)
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0
