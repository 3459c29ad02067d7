"""Acquisition devices: a small fixed set per dataset, shared by all patients.

Each device has a style (bit depth, noise, blur, tone curve, tint) and a fixed detector pattern
(gain non-uniformity, grid or stripe lines, vignetting, dust). The device of a visit is drawn
independently of the patient, so a re-identifier that keys on device texture links the wrong
people. Device patterns do not depend on the seed: they are hardware, the same in every cohort.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from reid_model.phantoms.common import (
    SIZE,
    STREAM_DEVICE,
    dataset_code,
    detector_grid,
    smooth_field,
    stream_key,
)


@dataclass(frozen=True)
class Device:
    key: str  # device style key, reported in PhantomImage.device
    bits_stored: int  # significant bits of the stored pixels
    noise: float  # noise level relative to the signal range
    blur: float  # detector blur (Gaussian sigma, pixels)
    gamma: float  # tone curve exponent applied after exposure
    pattern_amp: float  # amplitude of the fixed gain pattern
    stripe_period: float  # period of grid/stripe lines in pixels (0 = none)
    stripe_amp: float
    stripe_angle_deg: float
    vignette: float  # intensity fall-off towards the corners
    outside_value: float  # value outside the collimation / field of view, in [0, 1]
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # colour balance (fundus)
    slice_spacings_mm: tuple[float, ...] = ()  # volumes: reconstruction spacings offered


DEVICES: dict[str, tuple[Device, ...]] = {
    "cxr_site_a": (
        Device("siteA-CR-1", 10, 0.020, 1.0, 1.00, 0.020, 3.2, 0.015, 0.0, 0.15, 1.0),
        Device("siteA-CR-2", 12, 0.030, 0.7, 0.85, 0.030, 4.5, 0.020, 90.0, 0.25, 0.95),
        Device("siteA-CR-3", 12, 0.015, 1.3, 1.15, 0.015, 0.0, 0.000, 0.0, 0.10, 0.0),
    ),
    "cxr_site_b": (
        Device("siteB-DX-1", 14, 0.010, 0.5, 0.90, 0.010, 2.6, 0.008, 0.0, 0.05, 0.0),
        Device("siteB-DX-2", 12, 0.025, 0.6, 1.10, 0.025, 0.0, 0.000, 0.0, 0.20, 0.0),
        Device("siteB-DX-3", 14, 0.015, 0.9, 0.75, 0.018, 5.5, 0.012, 90.0, 0.12, 1.0),
    ),
    "chest_ct": (
        Device(
            "CT-A", 12, 12.0, 0.6, 1.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, slice_spacings_mm=(2.5, 5.0)
        ),
        Device("CT-B", 12, 20.0, 0.3, 1.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, slice_spacings_mm=(3.0,)),
        Device(
            "CT-C", 12, 8.0, 0.9, 1.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, slice_spacings_mm=(2.5, 5.0)
        ),
    ),
    "fundus": (
        Device("FUNDUS-A", 8, 0.015, 0.6, 0.95, 0.03, 0.0, 0.0, 0.0, 0.45, 0.0, (1.00, 0.95, 0.90)),
        Device("FUNDUS-B", 8, 0.025, 0.9, 1.10, 0.04, 0.0, 0.0, 0.0, 0.30, 0.0, (1.05, 1.00, 1.10)),
        Device("FUNDUS-C", 8, 0.010, 0.4, 0.85, 0.02, 0.0, 0.0, 0.0, 0.60, 0.0, (0.92, 1.02, 0.95)),
    ),
    "brain_mri": (
        Device(
            "MR-1.5T",
            12,
            0.030,
            0.8,
            1.00,
            0.03,
            6.0,
            0.010,
            0.0,
            0.25,
            0.0,
            slice_spacings_mm=(5.0, 6.0),
        ),
        Device(
            "MR-3T-A",
            12,
            0.020,
            0.5,
            0.90,
            0.04,
            0.0,
            0.000,
            0.0,
            0.40,
            0.0,
            slice_spacings_mm=(3.0, 4.0),
        ),
        Device(
            "MR-3T-B",
            12,
            0.025,
            0.6,
            1.10,
            0.03,
            9.0,
            0.008,
            90.0,
            0.30,
            0.0,
            slice_spacings_mm=(4.0, 5.0),
        ),
    ),
}


@lru_cache(maxsize=32)
def device_pattern(dataset: str, device_index: int) -> np.ndarray:
    """The fixed multiplicative detector pattern of one device (SIZE x SIZE float32, around 1)."""
    device = DEVICES[dataset][device_index]
    rng = np.random.default_rng(stream_key(0, dataset_code(dataset), device_index, STREAM_DEVICE))
    xx, yy = detector_grid(SIZE)
    # Low-frequency gain plus a fine, pixel-level fixed pattern.
    gain = ndimage.zoom(smooth_field(rng, (16, 16), 1.5), SIZE / 16, order=3)
    fine = rng.standard_normal((SIZE, SIZE)).astype(np.float32)
    pattern = 1.0 + device.pattern_amp * (0.5 * gain + fine)
    if device.stripe_period > 0:
        a = np.deg2rad(device.stripe_angle_deg)
        u = (np.cos(a) * xx + np.sin(a) * yy) * (SIZE / 2)
        pattern += device.stripe_amp * np.sin(2 * np.pi * u / device.stripe_period)
    centre = rng.uniform(-0.2, 0.2, size=2)
    pattern *= 1.0 - device.vignette * ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / 2.0
    out = pattern.astype(np.float32)
    out.setflags(write=False)
    return out


def pick_device(dataset: str, rng: np.random.Generator) -> int:
    """Device index of a visit: drawn independently of the patient."""
    return int(rng.integers(len(DEVICES[dataset])))
