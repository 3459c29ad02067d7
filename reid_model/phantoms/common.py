"""Shared building blocks of the phantom renderers: seeded streams, posed pixel grids, smooth
random fields, visit timing and quantisation.

Every renderer describes anatomy as functions of continuous patient coordinates. The visit pose
(rotation, scale, shift) is applied by evaluating those functions on a posed grid, so no image
is resampled and no interpolation blur accumulates.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from deid.errors import InputError
from reid_model.phantoms.types import DATASETS

SIZE = 256  # native rows and columns of every phantom image

# Every secondary stream is seeded by stream_key(seed, code, index, TAG, ...): the tag sits at a
# fixed position and the key ends in a non-zero terminator. SeedSequence ignores trailing zeros
# ([1, 2, 0] seeds like [1, 2]), so without these rules two streams could silently coincide.
STREAM_VISIT = 1
STREAM_FINDING = 2
STREAM_INTERVAL = 3
STREAM_DEVICE = 4
STREAM_SPLIT = 5
SPLIT_CODE = 1000  # stands in for the dataset code: splits are shared by all datasets


def dataset_code(dataset: str) -> int:
    """Stable integer code of a dataset name, used in every seed sequence.

    Raises
    ------
    InputError
        If ``dataset`` is not one of ``DATASETS``.
    """
    names = list(DATASETS)
    if dataset not in names:
        raise InputError(f"unknown phantom dataset {dataset!r}; choose one of {', '.join(names)}")
    return names.index(dataset)


def patient_key(dataset: str, patient_index: int) -> str:
    """The stable patient key of a phantom, unique across datasets (``PhantomImage.patient``)."""
    return f"{dataset}-{patient_index:05d}"


def check_indices(**values: int) -> None:
    """Raise ``InputError`` unless every given value is a non-negative integer."""
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise InputError(f"{name} must be a non-negative integer, got {value!r}")


def stream_key(seed: int, code: int, index: int, tag: int, *rest: int) -> list[int]:
    """Seed key of a secondary stream (see the note on STREAM_* above)."""
    return [seed, code, index, tag, *rest, 1]


def anatomy_rng(seed: int, dataset: str, patient_index: int) -> np.random.Generator:
    """The stream of a patient's persistent anatomy."""
    return np.random.default_rng([seed, dataset_code(dataset), patient_index])


def visit_rng(seed: int, dataset: str, patient_index: int, visit: int) -> np.random.Generator:
    """The stream of one visit's acquisition nuisance."""
    code = dataset_code(dataset)
    return np.random.default_rng(stream_key(seed, code, patient_index, STREAM_VISIT, visit))


def days_since_first_visit(seed: int, dataset: str, patient_index: int, visit: int) -> int:
    """Days between visit 0 and ``visit``; each interval is drawn from its own stream (2-24 months)
    so any visit is computed without rendering the earlier ones."""
    code = dataset_code(dataset)
    days = 0
    for k in range(1, visit + 1):
        rng = np.random.default_rng(stream_key(seed, code, patient_index, STREAM_INTERVAL, k))
        days += int(rng.integers(60, 730))
    return days


@dataclass(frozen=True)
class Pose:
    """In-plane placement of the patient in the detector frame (normalised units, image = [-1, 1]²)."""

    angle_deg: float = 0.0
    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    @staticmethod
    def sample(
        rng: np.random.Generator,
        max_angle: float,
        scale_range: tuple[float, float],
        max_shift: float,
    ) -> Pose:
        return Pose(
            angle_deg=float(rng.uniform(-max_angle, max_angle)),
            scale=float(rng.uniform(*scale_range)),
            shift_x=float(rng.uniform(-max_shift, max_shift)),
            shift_y=float(rng.uniform(-max_shift, max_shift)),
        )


@lru_cache(maxsize=4)
def detector_grid(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x right, y down) of a size x size detector in [-1, 1]."""
    axis = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    yy.setflags(write=False)
    xx.setflags(write=False)
    return xx, yy


def posed_grid(pose: Pose, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Patient coordinates seen by each detector pixel: the inverse of the pose transform."""
    xx, yy = detector_grid(size)
    a = np.deg2rad(pose.angle_deg)
    c, s = np.cos(a) / pose.scale, np.sin(a) / pose.scale
    dx, dy = xx - pose.shift_x, yy - pose.shift_y
    return (c * dx + s * dy).astype(np.float32), (-s * dx + c * dy).astype(np.float32)


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """A low-resolution, zero-mean, unit-variance Gaussian random field (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    field -= field.mean()
    field /= field.std() + 1e-8
    return field.astype(np.float32)


def sample_field(
    field: np.ndarray, x: np.ndarray, y: np.ndarray, extent: float = 1.2
) -> np.ndarray:
    """Bilinear samples of a 2D field covering [-extent, extent]² at patient coordinates (x, y).

    Coordinates outside the field are clamped to its border.
    """
    n_rows, n_cols = field.shape
    rows = np.clip((y * (0.5 / extent) + 0.5) * (n_rows - 1), 0.0, n_rows - 1.001)
    cols = np.clip((x * (0.5 / extent) + 0.5) * (n_cols - 1), 0.0, n_cols - 1.001)
    r0, c0 = rows.astype(np.intp), cols.astype(np.intp)
    fr, fc = (rows - r0).astype(np.float32), (cols - c0).astype(np.float32)
    flat = field.ravel()
    i00 = r0 * n_cols + c0
    top = flat[i00] * (1 - fc) + flat[i00 + 1] * fc
    bottom = flat[i00 + n_cols] * (1 - fc) + flat[i00 + n_cols + 1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.float32)


def soft_step(signed: np.ndarray, width: float) -> np.ndarray:
    """Smooth 0→1 transition (smoothstep polynomial, ``2 width`` wide) where ``signed`` crosses 0.

    Positive side = 1. Polynomial rather than tanh: it is evaluated ~20 times per image.
    """
    s = np.clip(np.asarray(signed, dtype=np.float32) * (0.5 / width) + 0.5, 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def drift(base: float, rate: float, years: float, direction: float) -> float:
    """A parameter after ``years`` of slow, patient-specific drift (``rate`` = fraction per year)."""
    return base * (1.0 + rate * years * direction)


def tone_quantise(
    image: np.ndarray, gamma: float, bits: int, dtype: type[np.integer], levels: int = 4096
) -> np.ndarray:
    """Clip to [0, 1], apply the tone curve ``x ** gamma`` and quantise to ``bits`` bits.

    A lookup table on ``levels`` input levels replaces a per-pixel power (several times faster).
    """
    top = (1 << bits) - 1
    curve = np.linspace(0.0, 1.0, levels) ** gamma
    lut = np.clip(np.rint(curve * top), 0, top).astype(dtype)
    index = np.clip(image * (levels - 1) + 0.5, 0, levels - 1).astype(np.intp)
    return lut[index]


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the two last axes; a no-op for a negligible sigma."""
    if sigma < 0.2:
        return image
    sig = (0.0,) * (image.ndim - 2) + (sigma, sigma)
    return ndimage.gaussian_filter(image, sig, mode="nearest")


def to_detector(pose: Pose, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Detector coordinates of patient points (the forward pose transform)."""
    a = np.deg2rad(pose.angle_deg)
    c, s = np.cos(a) * pose.scale, np.sin(a) * pose.scale
    return c * x - s * y + pose.shift_x, s * x + c * y + pose.shift_y


def disk_map(
    pose: Pose, centres: np.ndarray, radii: np.ndarray, edge: float = 0.6, size: int = SIZE
) -> np.ndarray:
    """Coverage (0..1, max over disks) of small disks given in patient units, seen through pose.

    Each disk is evaluated only in its bounding window, so many small spots stay cheap.
    ``edge`` is the soft edge width in pixels.
    """
    out = np.zeros((size, size), np.float32)
    if len(radii) == 0:
        return out
    dx, dy = to_detector(pose, centres[:, 0], centres[:, 1])
    cols = (dx + 1.0) * 0.5 * size - 0.5
    rows = (dy + 1.0) * 0.5 * size - 0.5
    rad_px = radii * pose.scale * 0.5 * size
    for r, c, rad in zip(rows.tolist(), cols.tolist(), rad_px.tolist(), strict=True):
        reach = int(np.ceil(rad + 2 * edge + 1))
        r0, r1 = max(int(r) - reach, 0), min(int(r) + reach + 1, size)
        c0, c1 = max(int(c) - reach, 0), min(int(c) + reach + 1, size)
        if r1 <= r0 or c1 <= c0:
            continue
        rr = np.arange(r0, r1, dtype=np.float32)[:, None] - r
        cc = np.arange(c0, c1, dtype=np.float32)[None, :] - c
        cover = soft_step(rad - np.sqrt(rr * rr + cc * cc), edge)
        np.maximum(out[r0:r1, c0:c1], cover, out=out[r0:r1, c0:c1])
    return out
