"""Snap perturbed pixels to the values the writers will store, so that the identity check after
the scrub measures the file that is released, not a float image that never exists on disk."""

from __future__ import annotations

import numpy as np

from deid.io.dicom_write import to_stored
from deid.io.record import Record


def quantise(record: Record, pixels: np.ndarray) -> np.ndarray:
    """Round ``pixels`` (``record``'s layout, modality units) to the source's stored grid.

    Mirrors the inversion done by :func:`deid.io.writers.write_like`: modality units -> stored
    integers (rescale slope/intercept, modality LUT, MONOCHROME1 pivot), rounded and clipped to
    the stored range, and back to modality units. Float sources are returned unchanged. JPEG
    sources are re-encoded lossily by the writer; that loss is not modelled here.

    Returns
    -------
    np.ndarray
        float32, same shape, values that ``write_like`` writes back exactly.
    """
    values = np.asarray(pixels, dtype=np.float64)
    encoding = record.encoding
    if encoding is None or record.source_dtype.kind == "f":
        return values.astype(np.float32)
    if record.kind == "dicom" and record.photometric.startswith("MONOCHROME"):
        frames = values[np.newaxis] if values.ndim == 2 else values
        stored = to_stored(frames, encoding, 0)
        if encoding.modality_lut is not None:
            first, entries = encoding.modality_lut
            back = np.asarray(entries, dtype=np.float64)[stored.astype(np.int64) - first]
        else:
            assert encoding.slopes is not None and encoding.intercepts is not None
            count = frames.shape[0]
            slopes = encoding.slopes[:count].reshape(-1, 1, 1)
            back = stored * slopes + encoding.intercepts[:count].reshape(-1, 1, 1)
        if encoding.invert_pivot is not None:
            back = encoding.invert_pivot - back
        return back.reshape(values.shape).astype(np.float32)
    if record.kind == "dicom":  # colour: stored as unsigned samples
        return np.clip(np.rint(values), 0, encoding.stored_max).astype(np.float32)
    if record.kind == "nifti":
        assert encoding.slopes is not None and encoding.intercepts is not None
        slope, inter = float(encoding.slopes[0]), float(encoding.intercepts[0])
        if not np.isfinite(slope) or slope == 0.0:
            slope = 1.0
        inter = inter if np.isfinite(inter) else 0.0
        stored = np.clip(
            np.rint((values - inter) / slope), encoding.stored_min, encoding.stored_max
        )
        return (stored * slope + inter).astype(np.float32)
    return np.clip(np.rint(values), encoding.stored_min, encoding.stored_max).astype(np.float32)
