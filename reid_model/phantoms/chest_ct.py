"""Chest CT volumes: axial slices in Hounsfield units (int16).

The patient is a stack of parametric cross-sections that change smoothly along z (mm from the
lung apex): body outline with subcutaneous fat and muscle, lungs with vessels, heart,
ascending/descending aorta and arch, trachea splitting into bronchi, vertebrae alternating with
discs, ribs, sternum. Identity lives in these shapes and their course through z. A visit scans a
slab of 8-32 slices (device spacing) that always covers the patient's "core" region, where the
findings sit, so every labelled finding is visible.
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
    drift,
    gaussian_blur,
    patient_key,
    posed_grid,
    sample_field,
    smooth_field,
    soft_step,
    visit_rng,
)
from reid_model.phantoms.devices import DEVICES, pick_device
from reid_model.phantoms.findings import finding_rng
from reid_model.phantoms.types import PhantomImage

_FOV_MM = 380.0  # reconstruction diameter at pose scale 1
_THORAX_MM = 300.0  # apex (z = 0) to lung base
_CORE_HALF_MM = 8.0  # every slab covers core ± this


@dataclass(frozen=True)
class ChestCTAnatomy:
    body: np.ndarray  # half width, half depth, y centre, fat thickness, superellipse exponent
    lungs: np.ndarray  # (2, 4) x, y, half width, half depth
    lung_shape: np.ndarray  # (2, 5) harmonic coefficients of the lung outline
    heart: np.ndarray  # x, y, half width, half depth, z start (fraction)
    aorta: np.ndarray  # ascending x, y, descending x, y, radius, arch z (fraction)
    trachea: np.ndarray  # x, y, radius, carina z (fraction)
    spine: np.ndarray  # x, y, body radius
    vertebra_pitch_mm: float
    vertebra_phase: float
    rib_phase: float
    rib_pitch_mm: float
    vessel_fields: np.ndarray  # (2, n, n) fields mixed along z into vessel "tubes"
    vessel_freq: float  # rad/mm of the mixing
    core_mm: float  # centre of the region every slab covers
    drift_dir: np.ndarray


@lru_cache(maxsize=256)
def ct_anatomy(seed: int, dataset: str, patient_index: int) -> ChestCTAnatomy:
    """Draw (and cache) the persistent chest anatomy of one CT patient."""
    rng = anatomy_rng(seed, dataset, patient_index)
    u = rng.uniform
    bw, bd = u(0.70, 0.84), u(0.46, 0.58)
    lungs = np.array(
        [
            [-u(0.30, 0.36), u(-0.04, 0.04), u(0.20, 0.25), u(0.30, 0.38)],
            [u(0.30, 0.36), u(-0.04, 0.04), u(0.19, 0.24), u(0.30, 0.37)],
        ]
    )
    lungs[:, 0] *= bw / 0.77
    return ChestCTAnatomy(
        body=np.array([bw, bd, u(0.0, 0.08), u(0.03, 0.09), u(2.1, 2.8)]),
        lungs=lungs,
        lung_shape=rng.uniform(-0.08, 0.08, (2, 5)),
        heart=np.array([u(0.04, 0.12), u(-0.14, -0.04), u(0.24, 0.3), u(0.2, 0.26), u(0.42, 0.52)]),
        aorta=np.array(
            [
                u(0.0, 0.06),
                u(-0.16, -0.08),
                u(0.08, 0.14),
                u(0.14, 0.2),
                u(0.045, 0.06),
                u(0.2, 0.28),
            ]
        ),
        trachea=np.array([u(-0.02, 0.02), u(-0.06, 0.02), u(0.038, 0.05), u(0.36, 0.44)]),
        spine=np.array([u(-0.02, 0.02), u(0.26, 0.32), u(0.08, 0.1)]),
        vertebra_pitch_mm=float(u(22.0, 27.0)),
        vertebra_phase=float(u(0.0, 1.0)),
        rib_phase=float(u(0.0, 2 * np.pi)),
        rib_pitch_mm=float(u(55.0, 75.0)),
        vessel_fields=np.stack([smooth_field(rng, (128, 128), 1.0) for _ in range(2)]),
        vessel_freq=float(u(0.05, 0.09)),
        core_mm=float(u(0.42, 0.62) * _THORAX_MM),
        drift_dir=rng.uniform(-1.0, 1.0, 2),
    )


def _harmonic_radius(
    dx: np.ndarray, dy: np.ndarray, k: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Polar radius and outline radius 1 + low-order harmonics (cos/sin of the angle only)."""
    r = np.sqrt(dx * dx + dy * dy) + 1e-6
    c, s = dx / r, dy / r
    k0, k1, k2, k3, k4 = (float(v) for v in k)
    edge = (
        1.0
        + k0 * (c * c - s * s)
        + k1 * 2 * c * s
        + k2 * c * (c * c - 3 * s * s)
        + k3 * s * (3 * c * c - s * s)
        + k4 * c
    )
    return r, edge


class _Geometry:
    """Slice-independent distance maps of one visit (structures run straight along z, so their
    in-plane distances are computed once; z only changes sizes and which structures exist)."""

    def __init__(self, anat: ChestCTAnatomy, x: np.ndarray, y: np.ndarray) -> None:
        bw, bd, by, fat, expo = (float(v) for v in anat.body)
        self.rho = (np.abs(x / bw) ** expo + np.abs((y - by) / bd) ** expo) ** (1.0 / expo)
        self.fat_rho = fat / bw
        self.lungs = [
            _harmonic_radius(
                (x - float(lx)) / float(lw), (y - float(ly)) / float(ld), anat.lung_shape[i]
            )
            for i, (lx, ly, lw, ld) in enumerate(anat.lungs)
        ]
        hx, hy, hw, hd, _ = (float(v) for v in anat.heart)
        self.heart = np.hypot((x - hx) / hw, (y - hy) / hd)
        self.envelope = np.hypot((x - hx * 0.5) / 0.3, (y - hy + 0.02) / 0.36)
        ax, ay, dx, dy, _, _ = (float(v) for v in anat.aorta)
        self.ascending = np.hypot(x - ax, y - ay)
        self.descending = np.hypot(x - dx, y - dy)
        t = np.clip((x - ax) / (dx - ax + 1e-6), 0.0, 1.0)
        self.arch = np.hypot(x - (ax + t * (dx - ax)), y - (ay + t * (dy - ay)))
        self.vessel_fields = [sample_field(f, x, y) for f in anat.vessel_fields]
        self.hilum = np.minimum(
            np.hypot(x - float(anat.lungs[0, 0]) * 0.45, y),
            np.hypot(x - float(anat.lungs[1, 0]) * 0.45, y),
        )
        tx, ty, _, _ = (float(v) for v in anat.trachea)
        self.x, self.y, self.tx, self.ty = x, y, tx, ty
        self.trachea = np.hypot(x - tx, y - ty)
        sx, sy, sr = (float(v) for v in anat.spine)
        self.vertebra = np.hypot(x - sx, (y - sy) * 1.1)
        self.canal = np.hypot(x - sx, y - sy - sr - 0.05)
        self.spinous = soft_step(0.018 - np.abs(x - sx), 0.004) * _band(
            y, sy + sr + 0.1, sy + sr + 0.24
        )
        ang = np.arctan2((y - by) / bd, x / bw)
        self.rib_angle = 11.0 * ang
        self.lateral = soft_step(np.abs(np.cos(ang)) - 0.25, 0.05)
        self.sternum = soft_step(0.05 - np.abs(x), 0.006) * (y < by)


def _slice_hu(anat: ChestCTAnatomy, g: _Geometry, z_mm: float, years: float) -> np.ndarray:
    """Hounsfield units of one axial slice at ``z_mm``."""
    zf = z_mm / _THORAX_MM
    weight = drift(1.0, 0.01, years, float(anat.drift_dir[0]))
    rho = g.rho / ((0.93 + 0.09 * zf) * weight)
    body = soft_step(1.0 - rho, 0.01)
    muscle = soft_step(1.0 - g.fat_rho - rho, 0.01)
    hu = -1000.0 + body * 900.0 + muscle * 140.0  # air -1000, fat -100, muscle/organs +40

    # Lungs, shrinking towards apex and base; the heart and great vessels displace them.
    size = float(np.sin(np.pi * np.clip(zf * 0.88 + 0.06, 0.0, 1.0)) ** 0.5)
    lung = np.maximum(*(soft_step(edge - r / size, 0.02) for r, edge in g.lungs))
    _, _, _, _, heart_z = (float(v) for v in anat.heart)
    _, _, _, _, ar, arch_z = (float(v) for v in anat.aorta)
    heart = soft_step(1.0 - g.heart, 0.02) * _ramp(zf - heart_z, 0.04)
    ascending = (
        soft_step(ar * 1.15 - g.ascending, 0.004)
        * _ramp(zf - arch_z, 0.01)
        * _ramp(heart_z + 0.05 - zf, 0.01)
    )
    descending = soft_step(ar - g.descending, 0.004) * _ramp(zf - arch_z, 0.01)
    arch = soft_step(ar - g.arch, 0.004) * _ramp(0.015 - abs(zf - arch_z), 0.006)
    great = np.maximum(np.maximum(ascending, descending), arch)
    structures = np.maximum(heart, great)
    lung = lung * (1.0 - structures) * body
    envelope = soft_step(1.0 - g.envelope, 0.05) * (1.0 - structures) * (1.0 - lung)
    hu += great * 10.0 + heart * 5.0 - 120.0 * envelope  # mediastinal fat outlines the vessels

    # Pulmonary vessels: peaks of a field that rotates between two fields along z, so each
    # vessel shows as a dot or short branch that moves from slice to slice.
    mix = anat.vessel_freq * z_mm
    field = np.cos(mix) * g.vessel_fields[0] + np.sin(mix) * g.vessel_fields[1]
    vessels = soft_step(field - (2.3 - 0.7 * np.exp(-g.hilum / 0.25)), 0.1)
    hu += lung * (-880.0 + 830.0 * vessels)

    # Airways: trachea above the carina, two main bronchi below it.
    _, _, tr, carina = (float(v) for v in anat.trachea)
    if zf < carina:
        airway = soft_step(tr - g.trachea, 0.005)
    elif zf < carina + 0.2:
        spread = min((zf - carina) * 1.6, 0.25)
        airway = np.maximum(
            soft_step(tr * 0.7 - np.hypot(g.x - g.tx + 0.05 + spread, g.y - g.ty), 0.005),
            soft_step(tr * 0.65 - np.hypot(g.x - g.tx - 0.05 - spread, g.y - g.ty), 0.005),
        )
    else:
        airway = 0.0
    hu -= airway * 1040.0 * (1.0 - lung)

    # Spine: vertebral body (cortex + cancellous) or disc, posterior ring, spinous process.
    sr = float(anat.spine[2])
    is_disc = (z_mm / anat.vertebra_pitch_mm + anat.vertebra_phase) % 1.0 < 0.2
    vb = soft_step(sr - g.vertebra, 0.005)
    if is_disc:
        hu += vb * 50.0
    else:
        cortex = vb * soft_step(g.vertebra - sr + 0.018, 0.004)
        ring = soft_step(0.075 - g.canal, 0.005) - soft_step(0.045 - g.canal, 0.005)
        hu += vb * 260.0 + cortex * 450.0 + ring * 600.0
    hu += g.spinous * 550.0 - soft_step(0.045 - g.canal, 0.005) * 30.0

    # Ribs: bone segments on a ring inside the chest wall, their angle advancing with z.
    on_ring = soft_step(0.026 - np.abs(rho - 0.9 + g.fat_rho * 0.5), 0.006)
    rib = np.cos(g.rib_angle + (2 * np.pi * z_mm / anat.rib_pitch_mm + anat.rib_phase)) > 0.72
    hu += on_ring * g.lateral * rib * 720.0
    if 0.25 < zf < 0.85:
        hu += g.sternum * soft_step(0.03 - np.abs(rho - 0.9), 0.006) * 500.0
    return hu.astype(np.float32)


def _ramp(value: float, width: float) -> float:
    return float(soft_step(np.float32(value), width))


def _band(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return soft_step(v - lo, 0.004) * soft_step(hi - v, 0.004)


def _finding_blob(
    x: np.ndarray, y: np.ndarray, z_mm: float, centre: np.ndarray, radius_mm: float
) -> np.ndarray:
    """Soft sphere of ``radius_mm`` around (x, y, z_mm) in patient units (x, y normalised)."""
    scale = _FOV_MM / 2.0
    dz = (z_mm - centre[2]) / scale
    dist = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + dz * dz)
    return soft_step(radius_mm / scale - dist, 0.006)


def render_chest_ct(
    dataset: str, patient_index: int, visit: int, seed: int, split: str, findings: dict[str, bool]
) -> PhantomImage:
    """Render one chest CT visit (see ``reid_model.phantoms.render``)."""
    anat = ct_anatomy(seed, dataset, patient_index)
    days = days_since_first_visit(seed, dataset, patient_index, visit)
    years = days / 365.25
    rng = visit_rng(seed, dataset, patient_index, visit)
    device_index = pick_device(dataset, rng)
    device = DEVICES[dataset][device_index]
    pose = Pose.sample(rng, max_angle=4.0, scale_range=(0.9, 1.12), max_shift=0.06)
    spacing_z = float(rng.choice(device.slice_spacings_mm))
    count = int(rng.integers(8, 33))
    cover = (count - 1) * spacing_z
    lo = max(0.0, anat.core_mm + _CORE_HALF_MM - cover)
    hi = min(_THORAX_MM - cover, anat.core_mm - _CORE_HALF_MM)
    start = float(rng.uniform(lo, max(lo, hi)))
    z = start + spacing_z * np.arange(count)
    x, y = posed_grid(pose)

    def lung_point(frng: np.random.Generator) -> np.ndarray:
        """A point well inside a lung at the core height (rejection sampling, fixed tries)."""
        size = np.sin(np.pi * np.clip(anat.core_mm / _THORAX_MM * 0.88 + 0.06, 0.0, 1.0)) ** 0.5
        candidates = frng.uniform(-0.8, 0.8, (64, 2))
        sides = frng.integers(0, 2, 64)
        z_mm = anat.core_mm + frng.uniform(-_CORE_HALF_MM, _CORE_HALF_MM)
        for (cu, cv), side in zip(candidates, sides, strict=True):
            lx, ly, lw, ld = anat.lungs[side]
            r, edge = _harmonic_radius(np.array([cu]), np.array([cv]), anat.lung_shape[side])
            px, py = lx + cu * lw * size, ly + cv * ld * size
            hx, hy, hw, hd, _ = anat.heart
            clear_of_heart = np.hypot((px - hx) / hw, (py - hy) / hd) > 1.25
            clear_of_aorta = np.hypot(px - anat.aorta[2], py - anat.aorta[3]) > anat.aorta[4] + 0.06
            if r[0] < 0.7 * edge[0] and clear_of_heart and clear_of_aorta:
                return np.array([px, py, z_mm])
        lx, ly, _, _ = anat.lungs[sides[0]]
        return np.array([lx, ly, z_mm])

    nod = finding_rng(seed, dataset, patient_index, "nodule", None)
    nod_centre, nod_r = lung_point(nod), float(nod.uniform(5.0, 9.0))
    ggo = finding_rng(seed, dataset, patient_index, "ground_glass", visit)
    ggo_centre, ggo_r = lung_point(ggo), float(ggo.uniform(18.0, 32.0))
    ggo_field = smooth_field(ggo, (16, 16), 1.2)

    geometry = _Geometry(anat, x, y)
    slices = np.empty((count, SIZE, SIZE), np.float32)
    for i, z_mm in enumerate(z.tolist()):
        hu = _slice_hu(anat, geometry, z_mm, years)
        lungish = soft_step(-500.0 - hu, 150.0)  # lung parenchyma, where the findings live
        if findings.get("ground_glass"):
            blob = _finding_blob(x, y, z_mm, ggo_centre, ggo_r)
            patchy = np.clip(
                0.8 + 0.25 * sample_field(ggo_field, x - ggo_centre[0], y - ggo_centre[1]), 0.4, 1.0
            )
            hu += 350.0 * blob * patchy * lungish
        if findings.get("nodule"):
            hu += 900.0 * _finding_blob(x, y, z_mm, nod_centre, nod_r) * lungish
        slices[i] = hu

    # Scanner: reconstruction kernel (blur), correlated noise, table, field-of-view circle.
    slices = gaussian_blur(slices, device.blur + rng.uniform(0.0, 0.4))
    noise = gaussian_blur(rng.standard_normal(slices.shape, dtype=np.float32), 0.7)
    slices += noise * (device.noise * rng.uniform(0.7, 1.4) * 2.2)
    xx, yy = detector_grid(SIZE)
    table_y = float(rng.uniform(0.62, 0.8))
    table = soft_step(0.02 - np.abs(yy - table_y - 0.15 * xx**2), 0.006) * 1300.0
    slices += table[None] * (slices < -900)
    outside = np.hypot(xx, yy) > 1.0
    slices[:, outside] = -1024.0 if device_index != 1 else -2048.0
    pixels = np.clip(np.rint(slices), -2048, 2047).astype(np.int16)  # 12 bits signed

    origin = float(rng.uniform(-80.0, 80.0))  # table position of the apex; varies per visit
    spacing = _FOV_MM / SIZE / pose.scale
    return PhantomImage(
        dataset=dataset,
        patient=patient_key(dataset, patient_index),
        patient_index=patient_index,
        visit=visit,
        split=split,
        pixels=pixels,
        bits_stored=12,
        findings=dict(findings),
        days_since_first_visit=days,
        pixel_spacing_mm=(round(spacing, 4), round(spacing, 4)),
        slice_thickness_mm=spacing_z,
        slice_positions_mm=tuple(round(origin - float(v), 3) for v in z),
        device=device.key,
        extra={"core_z_mm": round(anat.core_mm, 2)},
    )
