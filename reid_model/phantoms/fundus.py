"""Colour fundus photographs (one eye per patient, 45-degree field, circular field of view).

Identity: the branching pattern of the retinal arteries and veins, the position, size and cup
of the optic disc, the macula and the choroidal pigment texture. Each patient keeps one eye
(``laterality``) through all visits, so identity never has to survive mirroring. Visits vary
camera pose, zoom, illumination, focus, colour balance, device and noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from reid_model.phantoms.common import (
    SIZE,
    Pose,
    anatomy_rng,
    days_since_first_visit,
    detector_grid,
    disk_map,
    drift,
    gaussian_blur,
    patient_key,
    posed_grid,
    sample_field,
    smooth_field,
    soft_step,
    tone_quantise,
    visit_rng,
)
from reid_model.phantoms.devices import DEVICES, device_pattern, pick_device
from reid_model.phantoms.findings import finding_rng
from reid_model.phantoms.types import PhantomImage
from reid_model.phantoms.vessel_tree import Tree, draw_tree, grow_tree

_FIELD_MM = 12.0  # retinal width covered by the image at zoom 1


@dataclass(frozen=True)
class FundusAnatomy:
    eye: str  # "R" or "L"
    disc: np.ndarray  # x, y, rx, ry, cup ratio
    macula: np.ndarray  # x, y, radius
    pigment: np.ndarray  # RGB base colour of the fundus
    texture: np.ndarray  # choroidal texture field
    arteries: Tree
    veins: Tree
    drift_dir: float


def _arcades(rng: np.random.Generator, disc: np.ndarray, macula: np.ndarray, width: float) -> Tree:
    """Four main vessels leaving the disc (superior/inferior, temporal/nasal) and their branches."""
    to_macula = float(np.arctan2(macula[1] - disc[1], macula[0] - disc[0]))
    roots = []
    for offset in (-0.9, 0.9):  # temporal arcades, curling around the macula
        roots.append(
            (float(disc[0]), float(disc[1]), to_macula + offset + rng.normal(0, 0.12), width)
        )
    for offset in (-2.1, 2.1):  # nasal vessels
        roots.append(
            (float(disc[0]), float(disc[1]), to_macula + offset + rng.normal(0, 0.2), width * 0.8)
        )
    return grow_tree(
        rng,
        roots,
        step=0.045,
        turn_sd=0.14,
        branch_prob=0.2,
        branch_angle=(0.5, 1.1),
        taper=0.97,
        min_width=0.005,
        bend=0.045,
        bend_centre=(float(macula[0]), float(macula[1])),
    )


@lru_cache(maxsize=512)
def fundus_anatomy(seed: int, dataset: str, patient_index: int) -> FundusAnatomy:
    """Draw (and cache) the persistent retina of one patient."""
    rng = anatomy_rng(seed, dataset, patient_index)
    u = rng.uniform
    eye = "R" if rng.random() < 0.5 else "L"
    nasal = 1.0 if eye == "R" else -1.0  # the disc lies nasally: image right for a right eye
    disc = np.array(
        [nasal * u(0.26, 0.38), u(-0.07, 0.07), u(0.085, 0.105), u(0.095, 0.12), u(0.25, 0.55)]
    )
    gap = u(0.5, 0.62)
    macula = np.array([disc[0] - nasal * gap, disc[1] + u(0.0, 0.08), u(0.11, 0.16)])
    pigment = np.array([u(0.72, 0.9), u(0.28, 0.42), u(0.1, 0.2)], dtype=np.float32)
    return FundusAnatomy(
        eye=eye,
        disc=disc,
        macula=macula,
        pigment=pigment,
        texture=smooth_field(rng, (64, 64), 1.0),
        arteries=_arcades(rng, disc, macula, u(0.012, 0.016)),
        veins=_arcades(rng, disc, macula, u(0.017, 0.022)),
        drift_dir=float(u(0.0, 1.0)),
    )


def _rgb(r: float, g: float, b: float) -> np.ndarray:
    return np.array([r, g, b], dtype=np.float32)


def _spots(
    rng: np.random.Generator,
    centre: tuple[float, float],
    spread: float,
    count: int,
    radius: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    centres = np.asarray(centre) + rng.normal(0.0, spread, (count, 2))
    return centres, rng.uniform(*radius, count)


def render_fundus(
    dataset: str, patient_index: int, visit: int, seed: int, split: str, findings: dict[str, bool]
) -> PhantomImage:
    """Render one fundus photograph visit (see ``reid_model.phantoms.render``)."""
    anat = fundus_anatomy(seed, dataset, patient_index)
    days = days_since_first_visit(seed, dataset, patient_index, visit)
    rng = visit_rng(seed, dataset, patient_index, visit)
    device_index = pick_device(dataset, rng)
    device = DEVICES[dataset][device_index]
    pose = Pose.sample(rng, max_angle=12.0, scale_range=(0.9, 1.12), max_shift=0.08)
    x, y = posed_grid(pose)

    # Background pigment with choroidal texture; macula darker, fovea with a small reflex.
    tex = sample_field(anat.texture, x, y)
    img = anat.pigment[None, None, :] * (1.0 + 0.045 * tex[..., None])
    mx, my, mr = (float(v) for v in anat.macula)
    dm2 = ((x - mx) ** 2 + (y - my) ** 2) / (mr * mr)
    img *= (1.0 - 0.4 * np.exp(-dm2))[..., None]
    img += (0.12 * np.exp(-dm2 * 60.0))[..., None]

    # Optic disc and cup (the cup grows slowly with age in some patients).
    dx, dy, rx, ry, cup = (float(v) for v in anat.disc)
    cup = drift(cup, 0.02, days / 365.25, anat.drift_dir)
    dr = np.sqrt(((x - dx) / rx) ** 2 + ((y - dy) / ry) ** 2)
    disc_cov = soft_step(1.0 - dr, 0.08)[..., None]
    cup_cov = soft_step(cup - dr, 0.06)[..., None]
    img = img * (1 - disc_cov) + _rgb(0.98, 0.72, 0.48) * disc_cov
    img = img * (1 - cup_cov) + _rgb(1.0, 0.9, 0.72) * cup_cov

    # Vessels: veins darker and wider than arteries.
    veins = draw_tree(anat.veins, pose, width_scale=1.0)[..., None]
    arteries = draw_tree(anat.arteries, pose, width_scale=1.0)[..., None]
    img = img * (1 - 0.75 * veins) + _rgb(0.42, 0.06, 0.04) * 0.75 * veins
    img = img * (1 - 0.6 * arteries) + _rgb(0.7, 0.16, 0.08) * 0.6 * arteries

    # Findings. Placement streams are always drawn so that toggling one changes only its pixels.
    ma = finding_rng(seed, dataset, patient_index, "microaneurysms", None)
    ma_spots = _spots(ma, (mx, my), 0.16, int(ma.integers(8, 20)), (0.008, 0.013))
    hm = finding_rng(seed, dataset, patient_index, "haemorrhages", visit)
    hm_spots = _spots(
        hm,
        (mx + hm.uniform(-0.2, 0.2), my + hm.uniform(-0.2, 0.2)),
        0.22,
        int(hm.integers(3, 7)),
        (0.022, 0.045),
    )
    ex = finding_rng(seed, dataset, patient_index, "exudates", visit)
    ex_spots = _spots(
        ex,
        (mx + ex.uniform(-0.15, 0.15), my + ex.uniform(-0.15, 0.15)),
        0.09,
        int(ex.integers(8, 18)),
        (0.008, 0.018),
    )
    for name, spots, colour, alpha in (
        ("haemorrhages", hm_spots, (0.38, 0.04, 0.03), 0.85),
        ("microaneurysms", ma_spots, (0.45, 0.03, 0.03), 0.9),
        ("exudates", ex_spots, (1.0, 0.92, 0.5), 0.85),
    ):
        if findings.get(name):
            cover = alpha * disk_map(pose, spots[0], spots[1])[..., None]
            img = img * (1 - cover) + _rgb(*colour) * cover

    # Camera: uneven illumination, device vignetting and tint, tone, focus blur, noise.
    xx, yy = detector_grid(SIZE)
    direction = rng.uniform(0.0, 2 * np.pi)
    illum = 1.0 + rng.uniform(0.05, 0.3) * (np.cos(direction) * xx + np.sin(direction) * yy)
    gain = rng.uniform(0.75, 1.15) * illum * device_pattern(dataset, device_index)
    tint = (np.asarray(device.tint) * rng.uniform(0.93, 1.07, 3)).astype(np.float32)
    img = img * (gain[..., None] * tint)
    img = np.moveaxis(
        gaussian_blur(np.moveaxis(img, -1, 0), device.blur + rng.uniform(0, 0.8)), 0, -1
    )
    noise = rng.standard_normal((SIZE, SIZE), dtype=np.float32)  # sensor noise, shared by channels
    img += (device.noise * rng.uniform(0.6, 1.5) * noise)[..., None]
    fov_r = rng.uniform(0.9, 0.97)
    cx, cy = rng.uniform(-0.02, 0.02, 2)
    img *= soft_step(fov_r - np.hypot(xx - cx, yy - cy), 0.006)[..., None]
    gamma = device.gamma * rng.uniform(0.85, 1.2)

    spacing = _FIELD_MM / SIZE / pose.scale
    return PhantomImage(
        dataset=dataset,
        patient=patient_key(dataset, patient_index),
        patient_index=patient_index,
        visit=visit,
        split=split,
        pixels=tone_quantise(img, gamma, 8, np.uint8),
        bits_stored=8,
        findings=dict(findings),
        days_since_first_visit=days,
        pixel_spacing_mm=(round(spacing, 5), round(spacing, 5)),
        laterality=anat.eye,
        device=device.key,
        extra={"field_of_view_radius": round(float(fov_r), 4)},
    )
