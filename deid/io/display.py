"""Modality values → display values in [0, 1]: the DICOM VOI window or LUT when the file has one,
a soft-tissue window for CT without one, robust percentile scaling otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from deid.io.record import Window

if TYPE_CHECKING:
    from deid.io.record import Record

# Soft-tissue window (HU), the usual default reading window for CT.
CT_DEFAULT = Window(center=40.0, width=400.0)
# Percentiles used when a grey image carries no window: robust to a few hot or dead pixels.
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Apply a DICOM VOI window or LUT (PS3.3 C.11.2.1) and return float32 in [0, 1].

    Parameters
    ----------
    values
        Modality values (after rescale), any shape.
    window
        Window centre/width with its VOI LUT function, or a LUT.
    """
    x = np.asarray(values, dtype=np.float64)
    if window.lut is not None and window.lut_first is not None:
        lut = np.asarray(window.lut, dtype=np.float64)
        index = np.clip(np.rint(x) - window.lut_first, 0, lut.size - 1).astype(np.int64)
        top = float(2 ** (window.lut_bits or 16) - 1)
        return np.clip(lut[index] / top, 0.0, 1.0).astype(np.float32)
    if window.center is None or window.width is None:
        raise ValueError("a Window needs either a LUT or a centre and width")
    c, w = window.center, max(window.width, 1.0)
    if window.function == "SIGMOID":
        out = 1.0 / (1.0 + np.exp(np.clip(-4.0 * (x - c) / w, -60.0, 60.0)))
    elif window.function == "LINEAR_EXACT":
        out = (x - c) / w + 0.5
    else:  # LINEAR, the DICOM default; width 1 is a threshold at the centre
        out = (x - (c - 0.5)) / max(w - 1.0, 1e-6) + 0.5
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def percentile_window(values: np.ndarray) -> Window:
    """A linear window spanning the 0.5-99.5 percentiles of the finite values."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Window(center=0.0, width=1.0)
    low, high = np.percentile(finite, [LOW_PERCENTILE, HIGH_PERCENTILE])
    return Window(
        center=float(low + high) / 2.0, width=float(max(high - low, 1e-6)), function="LINEAR_EXACT"
    )


def to_display(record: Record, pixels: np.ndarray) -> np.ndarray:
    """What a viewer would show for ``pixels`` given in ``record``'s modality units.

    Colour images are divided by their full-scale value. Grey images use, in order: the file's
    VOI window or LUT (applied to the un-inverted values for MONOCHROME1 sources, so the result
    is again bright-means-dense), the CT soft-tissue window, robust percentile scaling.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    encoding = record.encoding
    if not record.photometric.startswith("MONOCHROME"):
        full_scale = float(2**record.bits_stored - 1)
        if encoding is not None and encoding.stored_max > 0:
            full_scale = encoding.stored_max
        return np.clip(pixels / full_scale, 0.0, 1.0).astype(np.float32)
    if record.window is not None:
        pivot = encoding.invert_pivot if encoding is not None else None
        if pivot is None:
            return apply_window(pixels, record.window)
        return (1.0 - apply_window(pivot - pixels, record.window)).astype(np.float32)
    if record.modality == "CT":
        return apply_window(pixels, CT_DEFAULT)
    return apply_window(pixels, percentile_window(pixels))
