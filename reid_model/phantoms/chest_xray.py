"""Chest radiographs (PA/AP) for the two radiography sites.

Anatomy is an attenuation map built from parametric shapes in patient coordinates (x to the
image right = patient left in PA, y down): body outline, lungs with a diaphragm dome, heart and
aortic knob, spine with vertebral phase, posterior and anterior ribs as bands of a per-patient
"rib phase" field, clavicles, humeral heads, trachea and pulmonary vessel markings. The detector
then applies exposure, tone curve, device pattern, blur, noise, collimation and a marker.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from reid_model.phantoms.common import (
    SIZE,
    Pose,
    anatomy_rng,
    days_since_first_visit,
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
from reid_model.phantoms.markers import stamp_marker
from reid_model.phantoms.types import PhantomImage
from reid_model.phantoms.vessel_tree import Tree, draw_tree, grow_tree

_FOV_MM = 420.0  # detector width at pose scale 1


@dataclass(frozen=True)
class ChestAnatomy:
    """Persistent chest anatomy of one patient. Per-side arrays are indexed [patient right, left]."""

    body_width: float
    lung_medial: np.ndarray  # (2,)
    lung_width: np.ndarray  # (2,)
    lung_top: np.ndarray  # (2,)
    lung_bottom: np.ndarray  # (2,)
    dome: np.ndarray  # (2,)
    lung_harmonics: np.ndarray  # (2, 3, 2) amplitude, phase of lateral-edge harmonics
    heart: np.ndarray  # cx, cy, ax, ay, angle
    heart_harmonics: np.ndarray  # (3, 2)
    knob: np.ndarray  # cx, cy, r
    spine: np.ndarray  # x0, slope, curvature, scoliosis amplitude, scoliosis phase, half width
    vertebra_knots: np.ndarray  # y of vertebral boundaries
    rib_knots: np.ndarray  # (2, 11) y of posterior ribs at the spine
    rib_curve: np.ndarray  # (2, 3) alpha, beta0, beta1
    rib_thickness: np.ndarray  # (2, 11)
    anterior_knots: np.ndarray  # (2, 6)
    anterior_slope: np.ndarray  # (2,)
    clavicle: np.ndarray  # (2, 3) polynomial coefficients
    humerus: np.ndarray  # (2, 3) x, y, r
    breast: float  # breast shadow strength (0 = none)
    bubble: np.ndarray  # gastric bubble x, y, r (r = 0: none)
    vessels: Tree  # pulmonary arteries and veins branching from the hila
    drift_dir: np.ndarray  # (3,) ageing directions: heart, body, lungs


def _interp(x: np.ndarray, xp: object, fp: object) -> np.ndarray:
    return np.interp(x, xp, fp).astype(np.float32)


def _f32(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _pulmonary_tree(rng: np.random.Generator, lung_medial: np.ndarray) -> Tree:
    roots = []
    for side, sign in ((0, -1.0), (1, 1.0)):
        hx = sign * (lung_medial[side] + 0.08)
        for heading in np.linspace(-1.9, 1.7, 6) + rng.normal(0, 0.15, 6):
            # headings fan out from the hilum towards the lateral side (mirrored for the right)
            angle = heading if sign > 0 else np.pi - heading
            roots.append(
                (
                    hx,
                    float(rng.uniform(-0.08, 0.06)),
                    float(angle),
                    float(rng.uniform(0.010, 0.016)),
                )
            )
    return grow_tree(
        rng,
        roots,
        step=0.045,
        turn_sd=0.25,
        branch_prob=0.3,
        branch_angle=(0.3, 0.8),
        taper=0.93,
        min_width=0.005,
    )


@lru_cache(maxsize=512)
def chest_anatomy(seed: int, dataset: str, patient_index: int) -> ChestAnatomy:
    """Draw (and cache) the persistent anatomy of one chest radiograph patient."""
    rng = anatomy_rng(seed, dataset, patient_index)
    u = rng.uniform
    rib_knots = np.empty((2, 11))
    start = u(-0.84, -0.74)
    for side in range(2):
        gaps = u(0.10, 0.13) * np.linspace(0.85, 1.2, 10) * rng.uniform(0.88, 1.12, 10)
        rib_knots[side] = start + u(-0.02, 0.02) + np.concatenate([[0.0], np.cumsum(gaps)])
    anterior = np.empty((2, 6))
    for side in range(2):
        anterior[side] = u(-0.55, -0.45) + np.cumsum(np.r_[0.0, rng.uniform(0.13, 0.19, 5)])
    vert_gaps = u(0.11, 0.14) * rng.uniform(0.9, 1.1, 24)
    lung_medial = _f32([u(0.09, 0.13), u(0.10, 0.14)])
    return ChestAnatomy(
        body_width=float(u(0.86, 0.98)),
        lung_medial=lung_medial,
        lung_width=_f32([u(0.40, 0.50), u(0.38, 0.48)]),
        lung_top=_f32([u(-0.80, -0.68), u(-0.80, -0.68)]),
        lung_bottom=_f32([u(0.38, 0.52), u(0.44, 0.58)]),
        dome=_f32([u(0.12, 0.24), u(0.10, 0.22)]),
        lung_harmonics=_f32(
            np.stack([rng.uniform(-0.05, 0.05, (2, 3)), rng.uniform(0, 2 * np.pi, (2, 3))], axis=-1)
        ),
        heart=_f32([u(0.04, 0.11), u(0.2, 0.27), u(0.28, 0.34), u(0.22, 0.27), u(22, 42)]),
        heart_harmonics=_f32(
            np.stack([rng.uniform(-0.05, 0.05, 3), rng.uniform(0, 2 * np.pi, 3)], -1)
        ),
        knob=_f32([u(0.08, 0.14), u(-0.2, -0.1), u(0.05, 0.08)]),
        spine=_f32(
            [u(-0.03, 0.03), u(-0.03, 0.03), u(-0.04, 0.04), u(0, 0.03), u(0, 6.3), u(0.06, 0.08)]
        ),
        vertebra_knots=_f32(u(-1.7, -1.5) + np.concatenate([[0.0], np.cumsum(vert_gaps)])),
        rib_knots=_f32(rib_knots),
        rib_curve=_f32(
            np.stack(
                [rng.uniform(0.15, 0.3, 2), rng.uniform(1.1, 1.5, 2), rng.uniform(-0.1, 0.25, 2)],
                axis=-1,
            )
        ),
        rib_thickness=_f32(rng.uniform(0.24, 0.32, (2, 11))),
        anterior_knots=_f32(anterior),
        anterior_slope=_f32(rng.uniform(0.35, 0.6, 2)),
        clavicle=_f32(
            np.stack(
                [rng.uniform(-0.7, -0.6, 2), rng.uniform(-0.6, -0.35, 2), rng.uniform(0.3, 0.6, 2)],
                axis=-1,
            )
        ),
        humerus=_f32(
            np.stack(
                [
                    rng.uniform(0.92, 1.05, 2),
                    rng.uniform(-0.72, -0.55, 2),
                    rng.uniform(0.11, 0.15, 2),
                ],
                axis=-1,
            )
        ),
        breast=float(u(0.06, 0.14)) if rng.random() < 0.5 else 0.0,
        bubble=_f32([u(0.25, 0.45), u(0.05, 0.12), u(0.05, 0.09) if rng.random() < 0.7 else 0.0]),
        vessels=_pulmonary_tree(rng, lung_medial),
        drift_dir=rng.uniform(-1.0, 1.0, 3),
    )


def _aged(anat: ChestAnatomy, years: float) -> ChestAnatomy:
    """Slow drift of a few per cent per decade: heart size, body habitus, lung height."""
    d = anat.drift_dir
    heart = anat.heart.copy()
    heart[2:4] *= drift(1.0, 0.008, years, d[0] + 0.5)
    return replace(
        anat,
        heart=heart,
        body_width=drift(anat.body_width, 0.01, years, d[1]),
        lung_bottom=anat.lung_bottom * drift(1.0, 0.006, years, d[2]),
    )


_TABLE = 512
_DOME = np.sqrt(np.clip(1.0 - ((np.linspace(0, 1, _TABLE) - 0.4) / 0.62) ** 2, 0.0, 1.0))[
    None
].astype(np.float32)


def _lookup(table: np.ndarray, t: np.ndarray, row: np.ndarray | int) -> np.ndarray:
    """Nearest-sample lookup of 1D profiles ``table[row]`` at t in [0, 1] (cheaper than
    evaluating the trigonometric profile per pixel)."""
    return table.ravel()[(t * (_TABLE - 1) + 0.5).astype(np.intp) + row * _TABLE]


def _lung_profiles(anat: ChestAnatomy) -> np.ndarray:
    """Lateral lung edge (fraction of the lung width) from apex (t = 0) to base, per side."""
    t = np.linspace(0.0, 1.0, _TABLE)
    rounded_apex = np.sin(0.5 * np.pi * np.minimum(t / 0.45, 1.0)) ** 0.5
    rows = []
    for harm in anat.lung_harmonics:
        wobble = sum(a * np.sin((k + 1) * np.pi * t + p) for k, (a, p) in enumerate(harm))
        rows.append(rounded_apex * (1.0 + wobble))
    return np.asarray(rows, np.float32)


def _angular_harmonics(dx: np.ndarray, dy: np.ndarray, harmonics: np.ndarray) -> np.ndarray:
    """Sum of a_k cos(k theta + p_k), k = 2, 3, 4, from cos/sin of the angle (no arctan2)."""
    r = np.sqrt(dx * dx + dy * dy) + 1e-6
    c, s = dx / r, dy / r
    c2, s2 = c * c - s * s, 2 * c * s
    c3, s3 = c * c2 - s * s2, s * c2 + c * s2
    c4, s4 = c2 * c2 - s2 * s2, 2 * c2 * s2
    out = np.zeros_like(dx)
    for (a, p), (ck, sk) in zip(harmonics, ((c2, s2), (c3, s3), (c4, s4)), strict=True):
        out += float(a * np.cos(p)) * ck - float(a * np.sin(p)) * sk
    return out


def _side_coords(x: np.ndarray, spine_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lateral distance from the spine and side index (0 = image left = patient right in PA)."""
    rel = x - spine_x
    return np.abs(rel), (rel > 0).astype(np.intp)


def _attenuation(
    anat: ChestAnatomy,
    pose: Pose,
    x: np.ndarray,
    y: np.ndarray,
    ap_view: bool,
    vessels: np.ndarray,
    cardiomegaly: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Attenuation map (0 = air) and the lung mask, in the posed patient coordinates."""
    sp = anat.spine
    spine_x = sp[0] + sp[1] * y + sp[2] * y**2 + sp[3] * np.sin(2.2 * y + sp[4])
    u, side = _side_coords(x, spine_x)

    # Body outline with neck and shoulders; soft-tissue path length grows towards the midline.
    bw = _interp(
        y,
        [-1.5, -0.97, -0.84, -0.7, 0.0, 1.5],
        [0.26, 0.30, 1.25, 1.1, anat.body_width, anat.body_width * 1.08],
    )
    chord = np.sqrt(np.clip(1.0 - (x / bw) ** 2, 0.0, 1.0))
    att = (0.42 + 0.38 * chord) * soft_step(bw - np.abs(x), 0.02)
    if anat.breast > 0:
        for sx in (-1, 1):
            r = np.hypot((x - sx * 0.42) / 0.4, (y - 0.62) / 0.32)
            att += anat.breast * soft_step(1.0 - r, 0.3)

    # Lungs: apex-to-base profile, lateral harmonics, diaphragm dome.
    med, wid = anat.lung_medial[side], anat.lung_width[side]
    top, bottom, dome = anat.lung_top[side], anat.lung_bottom[side], anat.dome[side]
    t = np.clip((y - top) / (bottom - top), 0.0, 1.0)
    lateral = med + wid * _lookup(_lung_profiles(anat), t, side)
    q = np.clip((u - med) / wid, 0.0, 1.0)
    diaphragm = bottom - dome * _lookup(_DOME, q, 0) + 0.05 * q
    lung = (
        soft_step(u - med, 0.012)
        * soft_step(lateral - u, 0.012)
        * soft_step(y - top, 0.015)
        * soft_step(diaphragm - y, 0.012)
    )

    # Heart (rotated ellipse with a wavy border) and aortic knob overlay the medial lungs.
    hx, hy, hax, hay, hang = anat.heart
    if ap_view:  # the heart is further from the detector in AP: magnified
        hax, hay = hax * 1.1, hay * 1.08
    if cardiomegaly:  # mostly the left ventricle: the heart grows to the left and down
        hx, hy, hax, hay = hx + 0.04, hy + 0.03, hax * 1.3, hay * 1.15
    ca, sa = np.cos(np.deg2rad(hang)), np.sin(np.deg2rad(hang))
    dx, dy = x - hx, y - hy
    hr = np.hypot((ca * dx + sa * dy) / hax, (-sa * dx + ca * dy) / hay)
    heart = soft_step(1.0 + _angular_harmonics(dx, dy, anat.heart_harmonics) - hr, 0.04)
    kx, ky, kr = (float(v) for v in anat.knob)
    knob = disk_map(pose, np.array([[kx, ky]]), np.array([kr]), edge=1.5)
    mediastinum = np.maximum(heart, 0.8 * knob)
    air = lung * (1.0 - mediastinum)
    att -= 0.58 * air * (0.75 + 0.25 * np.sin(np.pi * q))
    att += 0.03 * mediastinum

    # Pulmonary vessels drawn from the hila, plus the hilar shadows.
    hilum = np.hypot(u - med - 0.08, (y + 0.02) * 0.8)
    att += air * (0.14 * vessels + 0.12 * np.exp(-((hilum / 0.1) ** 2)))

    # Trachea and main bronchi (air column above the carina).
    att -= 0.16 * soft_step(0.032 - np.abs(x - spine_x), 0.008) * soft_step(-0.1 - y, 0.02)
    bubble_x, bubble_y, bubble_r = (float(v) for v in anat.bubble)
    if bubble_r > 0:
        centre = np.array([[bubble_x, float(anat.lung_bottom[1]) + bubble_y]])
        att -= 0.25 * disk_map(pose, centre, np.array([bubble_r]), edge=1.5)

    # Spine: vertebral bodies separated by darker disc spaces; pedicles as bright rings.
    sw = sp[5] * (1.0 + 0.25 * (y + 1.0) / 2.0)
    v = _interp(y, anat.vertebra_knots, np.arange(anat.vertebra_knots.size, dtype=float))
    frac = v - np.floor(v)
    col = soft_step(sw - u, 0.01)
    disc = np.exp(-(((frac - 0.05) / 0.09) ** 2)) + np.exp(-(((frac - 1.05) / 0.09) ** 2))
    pedicle = np.exp(-(((u - 0.62 * sw) / 0.015) ** 2) - (((frac - 0.45) / 0.16) ** 2))
    att += col * (0.13 - 0.07 * disc) + 0.06 * pedicle

    # Ribs: the posterior rib phase follows y' = y + alpha u - beta(y) u², one band per knot.
    alpha, beta0, beta1 = (anat.rib_curve[side, k] for k in range(3))
    yp = y + alpha * u - (beta0 + beta1 * y) * u**2
    knots = anat.rib_knots
    ribs = np.zeros_like(att)
    anterior = np.zeros_like(att)
    chest_wall = soft_step(bw - 0.035 - np.abs(x), 0.02)
    for s in range(2):
        sel = side == s
        rv = _interp(yp[sel], knots[s], np.arange(knots.shape[1], dtype=float))
        nearest = np.clip(np.rint(rv).astype(np.intp), 0, knots.shape[1] - 1)
        d = rv - nearest
        thick = anat.rib_thickness[s][nearest]
        inside = (yp[sel] > knots[s, 0] - 0.06) & (yp[sel] < knots[s, -1] + 0.06)
        z = (d / thick) ** 2
        shaft = np.exp(-(z * z * z))
        cortex = np.exp(-(((np.abs(d) - thick) / 0.05) ** 2))
        ribs[sel] = inside * (0.7 * shaft + 0.45 * cortex)
        ya = y[sel] + anat.anterior_slope[s] * (u[sel] - 0.85)
        av = _interp(ya, anat.anterior_knots[s], np.arange(6, dtype=float))
        ad = av - np.rint(av)
        ainside = (ya > anat.anterior_knots[s, 0] - 0.05) & (ya < anat.anterior_knots[s, -1] + 0.05)
        ad2 = (ad / 0.2) ** 2
        anterior[sel] = ainside * np.exp(-(ad2 * ad2)) * soft_step(u[sel] - 0.25, 0.08)
    att += (
        chest_wall
        * soft_step(u - 0.04, 0.01)
        * (0.35 + 0.65 * lung)
        * (0.09 * ribs + 0.04 * anterior)
    )

    # Clavicles and humeral heads.
    c0, c1, c2 = (anat.clavicle[side, k] for k in range(3))
    if ap_view:
        c0, c2 = c0 - 0.05, c2 * 0.5
    clav_y = c0 + c1 * u + c2 * u**2
    cz = ((y - clav_y) / 0.032) ** 2
    clav = np.exp(-(cz * cz)) * soft_step(u - 0.05, 0.01) * soft_step(0.65 - u, 0.03)
    att += 0.22 * clav
    heads = anat.humerus[:, :2] * np.array([[-1.0, 1.0], [1.0, 1.0]])
    att += 0.3 * disk_map(pose, heads, anat.humerus[:, 2], edge=1.5)
    return att, lung * (1.0 - mediastinum)


def _add_findings(
    att: np.ndarray,
    lung: np.ndarray,
    anat: ChestAnatomy,
    x: np.ndarray,
    y: np.ndarray,
    findings: dict[str, bool],
    seed: int,
    dataset: str,
    patient_index: int,
    visit: int,
) -> np.ndarray:
    """Add the visible signs of the visit's findings to the attenuation map."""
    # Every placement stream is drawn even when absent, so forcing one finding leaves the rest.
    nod = finding_rng(seed, dataset, patient_index, "nodule", None)
    nod_side, nod_q, nod_t, nod_r = (
        nod.integers(2),
        nod.uniform(0.3, 0.75),
        nod.uniform(0.2, 0.65),
        nod.uniform(0.028, 0.042),
    )
    opa = finding_rng(seed, dataset, patient_index, "opacity", visit)
    opa_side, opa_q, opa_t, opa_r = (
        opa.integers(2),
        opa.uniform(0.25, 0.7),
        opa.uniform(0.45, 0.85),
        opa.uniform(0.12, 0.2),
    )
    opa_field = smooth_field(opa, (24, 24), 1.5)
    eff = finding_rng(seed, dataset, patient_index, "effusion", visit)
    eff_side, eff_h = eff.integers(2), eff.uniform(0.12, 0.22)

    def lung_point(side: int, q: float, t: float) -> tuple[float, float]:
        sign = 1.0 if side == 1 else -1.0
        px = sign * (anat.lung_medial[side] + q * anat.lung_width[side])
        py = anat.lung_top[side] + t * (anat.lung_bottom[side] - anat.lung_top[side])
        return px, py

    att = att.copy()
    if findings.get("nodule"):
        px, py = lung_point(nod_side, nod_q, nod_t)
        att += 0.35 * soft_step(nod_r - np.hypot(x - px, y - py), 0.006)
    if findings.get("opacity"):
        px, py = lung_point(opa_side, opa_q, opa_t)
        blob = soft_step(1.0 - np.hypot((x - px) / opa_r, (y - py) / (0.8 * opa_r)), 0.25)
        patches = np.clip(0.7 + 0.4 * sample_field(opa_field, x - px, y - py), 0.2, 1.0)
        att += 0.5 * (0.4 + 0.6 * lung) * blob * patches  # also seen through the heart, fainter
    if findings.get("effusion"):
        sign = 1.0 if eff_side == 1 else -1.0
        q = np.clip((sign * x - anat.lung_medial[eff_side]) / anat.lung_width[eff_side], 0.0, 1.0)
        level = anat.lung_bottom[eff_side] - eff_h - 0.12 * q  # meniscus rises laterally
        on_side = soft_step(sign * x, 0.02)
        att += 0.55 * on_side * soft_step(y - level, 0.02) * np.maximum(lung, 0.0) ** 0.5
    return att


def render_chest_xray(
    dataset: str, patient_index: int, visit: int, seed: int, split: str, findings: dict[str, bool]
) -> PhantomImage:
    """Render one chest radiograph visit (see ``reid_model.phantoms.render``)."""
    days = days_since_first_visit(seed, dataset, patient_index, visit)
    anat = _aged(chest_anatomy(seed, dataset, patient_index), days / 365.25)
    rng = visit_rng(seed, dataset, patient_index, visit)
    device_index = pick_device(dataset, rng)
    device = DEVICES[dataset][device_index]
    pose = Pose.sample(rng, max_angle=6.0, scale_range=(0.86, 1.08), max_shift=0.08)
    ap_view = bool(rng.random() < 0.3)
    x, y = posed_grid(pose)

    vessels = draw_tree(anat.vessels, pose, width_scale=1.0)
    att, lung = _attenuation(anat, pose, x, y, ap_view, vessels, bool(findings.get("cardiomegaly")))
    att = _add_findings(att, lung, anat, x, y, findings, seed, dataset, patient_index, visit)

    # Exposure and tone curve, then the detector (pattern, blur, noise) in detector coordinates.
    k = rng.uniform(0.9, 1.8)
    img = (1.0 - np.exp(-k * np.clip(att, 0.0, None))) / (1.0 - np.exp(-k * 1.2))
    lo, hi = rng.uniform(-0.06, 0.10), rng.uniform(0.92, 1.12)
    gamma = device.gamma * rng.uniform(1.0, 1.5)
    img = np.clip((img - lo) / (hi - lo), 0.0, 1.0)
    img = img * device_pattern(dataset, device_index)
    img = gaussian_blur(img, device.blur + rng.uniform(0.0, 0.7))
    noise = device.noise * rng.uniform(0.6, 1.6)
    img = img + noise * np.sqrt(np.clip(img, 0.0, None) + 0.05) * rng.standard_normal(
        img.shape, dtype=np.float32
    )

    # Collimation: each edge inset independently; outside is the device's blank value.
    inset = (rng.uniform(0.0, 0.12, 4) * SIZE).astype(int) * (rng.random(4) < 0.6)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[inset[0] : SIZE - inset[1], inset[2] : SIZE - inset[3]] = True
    img = np.where(mask, img, device.outside_value)

    text = "R" if rng.random() < 0.75 else "L"
    row = int(rng.integers(max(inset[0], 4), 60))
    col = int(rng.integers(6, 50)) if text == "R" else int(rng.integers(196, 236))
    img = stamp_marker(img.astype(np.float32), text, row, col, int(rng.integers(13, 22)), 1.0)
    burn_in = bool(rng.random() < 0.15)

    spacing = _FOV_MM / SIZE / pose.scale
    return PhantomImage(
        dataset=dataset,
        patient=patient_key(dataset, patient_index),
        patient_index=patient_index,
        visit=visit,
        split=split,
        pixels=tone_quantise(img, gamma, device.bits_stored, np.uint16),
        bits_stored=device.bits_stored,
        findings=dict(findings),
        days_since_first_visit=days,
        pixel_spacing_mm=(round(spacing, 4), round(spacing, 4)),
        view_position="AP" if ap_view else "PA",
        device=device.key,
        burn_in_phi=burn_in,
        extra={
            "marker": text,
            "pose_angle_deg": round(pose.angle_deg, 3),
            "pose_scale": round(pose.scale, 4),
            "pose_shift": (round(pose.shift_x, 4), round(pose.shift_y, 4)),
        },
    )
