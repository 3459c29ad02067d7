"""Brain MRI volumes: T1-weighted axial slices (uint16, 12 bits).

Identity lives in the head and brain outline, the gyral folding pattern (sulci placed by a
per-patient phase field over angle and height), the lateral ventricles and deep grey nuclei.
Visits vary head position, in-plane rotation, field of view, slab position, slice count and
spacing, contrast, coil bias field, device, blur and Rician noise.
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
    tone_quantise,
    visit_rng,
)
from reid_model.phantoms.devices import DEVICES, device_pattern, pick_device
from reid_model.phantoms.findings import finding_rng
from reid_model.phantoms.types import PhantomImage

_FOV_MM = 240.0
_HEAD_MM = 140.0  # z = 0: just below the lateral ventricles; z = _HEAD_MM: vertex
_CORE_HALF_MM = 8.0


@dataclass(frozen=True)
class BrainAnatomy:
    head: np.ndarray  # half width, half length, y centre, scalp, skull thickness
    outline: np.ndarray  # (4,) harmonic coefficients of the head outline
    folds: int  # number of gyri around the circumference
    fold_depth: float  # sulcal depth (fraction of the brain radius)
    cortex: float  # cortical thickness (fraction)
    fold_fields: np.ndarray  # (3, n, n) phase fields over (angle, height), (angle, depth), depth
    midline: np.ndarray  # interhemispheric fissure offset and tilt
    ventricles: np.ndarray  # (2, 5) x, y, half width, half length, angle (deg)
    ventricle_z: np.ndarray  # bottom, top (mm)
    nuclei: np.ndarray  # (2, 4) x, y, half width, half length of thalami
    core_mm: float
    drift_dir: float


@lru_cache(maxsize=256)
def brain_anatomy(seed: int, dataset: str, patient_index: int) -> BrainAnatomy:
    """Draw (and cache) the persistent head and brain of one MRI patient."""
    rng = anatomy_rng(seed, dataset, patient_index)
    u = rng.uniform
    vx, vy, vw, vl = u(0.08, 0.12), u(-0.06, 0.04), u(0.035, 0.055), u(0.24, 0.32)
    ventricles = np.array(
        [
            [
                -vx + u(-0.015, 0.015),
                vy + u(-0.02, 0.02),
                vw * u(0.85, 1.15),
                vl * u(0.9, 1.1),
                u(-14, -4),
            ],
            [
                vx + u(-0.015, 0.015),
                vy + u(-0.02, 0.02),
                vw * u(0.85, 1.15),
                vl * u(0.9, 1.1),
                u(4, 14),
            ],
        ]
    )
    bottom = u(25.0, 35.0)
    return BrainAnatomy(
        head=np.array(
            [u(0.6, 0.7), u(0.76, 0.86), u(-0.02, 0.05), u(0.035, 0.055), u(0.035, 0.055)]
        ),
        outline=rng.uniform(-0.04, 0.04, 4),
        folds=int(rng.integers(24, 32)),
        fold_depth=float(u(0.14, 0.2)),
        cortex=float(u(0.06, 0.08)),
        fold_fields=np.stack([smooth_field(rng, (64, 64), 2.5) for _ in range(3)]),
        midline=np.array([u(-0.03, 0.03), u(-0.05, 0.05)]),
        ventricles=ventricles,
        ventricle_z=np.array([bottom, bottom + u(35.0, 45.0)]),
        nuclei=np.array(
            [
                [-u(0.1, 0.14), u(0.06, 0.12), u(0.06, 0.08), u(0.09, 0.12)],
                [u(0.1, 0.14), u(0.06, 0.12), u(0.06, 0.08), u(0.09, 0.12)],
            ]
        ),
        core_mm=float(bottom + u(12.0, 22.0)),
        drift_dir=float(u(0.0, 1.0)),
    )


class _Geometry:
    """Slice-independent maps of one visit: elliptic radius and angle of each pixel, etc."""

    def __init__(self, anat: BrainAnatomy, x: np.ndarray, y: np.ndarray) -> None:
        hw, hl, hy, _, _ = (float(v) for v in anat.head)
        dx, dy = x / hw, (y - hy) / hl
        r = np.sqrt(dx * dx + dy * dy) + 1e-6
        c, s = dx / r, dy / r
        k = [float(v) for v in anat.outline]
        outline = 1.0 + k[0] * (c * c - s * s) + k[1] * 2 * c * s + k[2] * s + k[3] * c * s * s
        self.rho = r / outline  # 1 on the outer scalp surface (at full head size)
        self.theta = np.arctan2(x, -(y - hy))  # 0 anterior, ±pi posterior
        self.x, self.y = x, y
        off, tilt = (float(v) for v in anat.midline)
        self.midline = np.abs(x - off - tilt * y)
        self.ventricles = []
        for vx, vy, vw, vl, ang in anat.ventricles:
            a = np.deg2rad(float(ang))
            ex, ey = x - float(vx), y - float(vy)
            along = np.sin(a) * ex + np.cos(a) * ey
            across = np.cos(a) * ex - np.sin(a) * ey
            # frontal horns wider than the bodies: width grows towards the front (negative along)
            self.ventricles.append((across, along, float(vw), float(vl)))
        self.nuclei = [
            np.hypot((x - float(nx)) / float(nw), (y - float(ny)) / float(nl))
            for nx, ny, nw, nl in anat.nuclei
        ]


def _slice(
    anat: BrainAnatomy,
    g: _Geometry,
    z_mm: float,
    atrophy: bool,
    years: float,
    contrast: dict[str, float],
) -> np.ndarray:
    """T1-weighted intensity (0..1) of one axial slice at height ``z_mm``."""
    zf = z_mm / _HEAD_MM
    size = float(np.sqrt(max(1.0 - max(zf - 0.25, 0.0) ** 2 / 0.75**2, 1e-4)))
    rho = g.rho / size
    hw = float(anat.head[0])
    scalp, skull = float(anat.head[3]) / hw, float(anat.head[4]) / hw
    head = soft_step(1.0 - rho, 0.01)
    brain_edge = 1.0 - scalp - skull - 0.015
    shrink = drift(1.0, 0.004, years, anat.drift_dir) - (0.03 if atrophy else 0.0)
    r = rho / (brain_edge * min(shrink, 1.0))  # 1 on the brain surface

    # Gyral folding: sulci where the fold phase is near 0, white matter reaching into the gyri.
    # The phase bends with height (field 0) and with depth (field 1), so sulci curve and branch.
    height = np.full_like(g.theta, 0.6 * zf - 0.3)  # slow in z: sulci persist over ~2 cm
    angle = g.theta / np.pi
    phase = (
        anat.folds * g.theta
        + 2.2 * sample_field(anat.fold_fields[0], angle, height)
        + 1.2 * sample_field(anat.fold_fields[1], angle, 2.0 * (r - 0.85))
    )
    folds = np.cos(phase)
    depth = anat.fold_depth * (1.0 + 0.35 * sample_field(anat.fold_fields[2], angle, height))
    wm_edge = 1.0 - anat.cortex - depth * (0.5 + 0.5 * folds)
    brain = soft_step(1.0 - r, 0.01)
    wm = soft_step(wm_edge - r, 0.012)
    sulcus = soft_step(folds - (0.8 if atrophy else 0.9), 0.04) * soft_step(
        r - (1.0 - depth - anat.cortex), 0.02
    )
    fissure = soft_step((0.016 if atrophy else 0.01) - g.midline, 0.004) * soft_step(r - 0.6, 0.05)
    csf = np.maximum(np.maximum(sulcus, fissure), 1.0 - brain)

    # Ventricles (frontal horns wider) and thalami, only in their z range.
    v_lo, v_hi = (float(v) for v in anat.ventricle_z)
    v_size = (
        float(np.clip(np.sin(np.pi * (z_mm - v_lo) / (v_hi - v_lo)), 0.0, 1.0))
        if v_lo < z_mm < v_hi
        else 0.0
    )
    if v_size > 0:
        widen = 1.45 if atrophy else 1.0
        for across, along, vw, vl in g.ventricles:
            t = along / (vl * (0.6 + 0.4 * v_size))
            width = vw * widen * v_size * (1.0 + 0.6 * soft_step(-t, 0.3))
            csf = np.maximum(csf, soft_step(1.0 - np.hypot(across / width, t), 0.08))
    if z_mm < v_lo + 15.0:
        for dist in g.nuclei:
            wm = wm * (1.0 - 0.7 * soft_step(1.0 - dist, 0.1))

    c_wm, c_gm, c_csf, c_fat, c_bone = (contrast[k] for k in ("wm", "gm", "csf", "fat", "bone"))
    tissue = c_gm + (c_wm - c_gm) * wm
    inner = soft_step(1.0 - scalp - skull - rho, 0.006)  # inside the skull
    img = head * (c_fat * (1.0 - inner)) + inner * (tissue * (1.0 - csf) + c_csf * csf)
    skull_band = soft_step(1.0 - scalp - rho, 0.006) * (1.0 - inner)  # dark cortical bone
    img = img * (1.0 - skull_band) + skull_band * c_bone
    return img.astype(np.float32)


def render_brain_mri(
    dataset: str, patient_index: int, visit: int, seed: int, split: str, findings: dict[str, bool]
) -> PhantomImage:
    """Render one brain MRI visit (see ``reid_model.phantoms.render``)."""
    anat = brain_anatomy(seed, dataset, patient_index)
    days = days_since_first_visit(seed, dataset, patient_index, visit)
    rng = visit_rng(seed, dataset, patient_index, visit)
    device_index = pick_device(dataset, rng)
    device = DEVICES[dataset][device_index]
    pose = Pose.sample(rng, max_angle=5.0, scale_range=(0.9, 1.12), max_shift=0.06)
    spacing_z = float(rng.choice(device.slice_spacings_mm))
    count = min(int(rng.integers(8, 33)), int(150.0 / spacing_z) + 1)
    cover = (count - 1) * spacing_z
    lo = max(-10.0, anat.core_mm + _CORE_HALF_MM - cover)
    hi = min(_HEAD_MM + 10.0 - cover, anat.core_mm - _CORE_HALF_MM)
    z = float(rng.uniform(lo, max(lo, hi))) + spacing_z * np.arange(count)
    contrast = {
        "wm": rng.uniform(0.66, 0.76),
        "gm": rng.uniform(0.40, 0.50),
        "csf": rng.uniform(0.08, 0.16),
        "fat": rng.uniform(0.78, 0.92),
        "bone": rng.uniform(0.18, 0.3),
    }
    x, y = posed_grid(pose)
    g = _Geometry(anat, x, y)

    les = finding_rng(seed, dataset, patient_index, "lesion", visit)
    n_les = int(les.integers(3, 8))
    les_side = np.where(les.random(n_les) < 0.5, 0, 1)
    les_pos = np.stack(
        [
            anat.ventricles[les_side, 0]
            + np.sign(anat.ventricles[les_side, 0]) * les.uniform(0.06, 0.13, n_les),
            anat.ventricles[les_side, 1] + les.uniform(-0.22, 0.22, n_les),
            anat.core_mm + les.uniform(-_CORE_HALF_MM, _CORE_HALF_MM, n_les),
        ],
        axis=1,
    )
    les_r = les.uniform(3.0, 5.5, n_les) / (_FOV_MM / 2.0)

    years = days / 365.25
    atrophy = bool(findings.get("atrophy"))
    slices = np.empty((count, SIZE, SIZE), np.float32)
    for i, z_mm in enumerate(z.tolist()):
        img = _slice(anat, g, z_mm, atrophy, years, contrast)
        if findings.get("lesion"):
            for (lx, ly, lz), lr in zip(les_pos.tolist(), les_r.tolist(), strict=True):
                dz = (z_mm - lz) / (_FOV_MM / 2.0)
                if abs(dz) < lr:
                    rad = float(np.sqrt(lr * lr - dz * dz))
                    spot = soft_step(rad - np.hypot(x - lx, y - ly), 0.004)
                    img = img * (1.0 - 0.55 * spot)  # T1-hypointense white-matter lesion
        slices[i] = img

    # Scanner: coil bias field, device pattern, blur, Rician noise, window into 12 bits.
    xx, yy = detector_grid(SIZE)
    bias = 1.0 + rng.uniform(-0.15, 0.15) * xx + rng.uniform(-0.15, 0.15) * yy
    slices *= (bias * device_pattern(dataset, device_index))[None]
    slices = gaussian_blur(slices, device.blur + rng.uniform(0.0, 0.5))
    sigma = device.noise * rng.uniform(0.6, 1.5)
    real = slices + sigma * rng.standard_normal(slices.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(slices.shape, dtype=np.float32)
    slices = np.sqrt(real * real + imag * imag) * rng.uniform(0.8, 1.05)
    gamma = device.gamma * rng.uniform(0.9, 1.1)

    spacing = _FOV_MM / SIZE / pose.scale
    origin = float(rng.uniform(-40.0, 40.0))
    return PhantomImage(
        dataset=dataset,
        patient=patient_key(dataset, patient_index),
        patient_index=patient_index,
        visit=visit,
        split=split,
        pixels=tone_quantise(slices, gamma, 12, np.uint16),
        bits_stored=12,
        findings=dict(findings),
        days_since_first_visit=days,
        pixel_spacing_mm=(round(spacing, 4), round(spacing, 4)),
        slice_thickness_mm=spacing_z,
        slice_positions_mm=tuple(round(origin + float(v), 3) for v in z),
        device=device.key,
        extra={"sequence": "T1w", "core_z_mm": round(anat.core_mm, 2)},
    )
