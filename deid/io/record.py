"""The units a release is made of: lazy items found by discovery, decoded records, skipped files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

Kind = Literal["dicom", "png", "jpeg", "tiff", "nifti"]


@dataclass(frozen=True)
class Skipped:
    """A file that a run could not use, with a reason a person can act on."""

    path: Path
    reason: str


@dataclass(frozen=True)
class ReleaseItem:
    """One not-yet-decoded unit of a release: a file, or the slices of one DICOM series.

    Cheap to build and to pickle, so discovery can hand items to decoding workers.
    """

    key: str  # stable id inside the release, see ``Record.key``
    paths: tuple[Path, ...]  # slice order for grouped DICOM series
    kind: Kind


@dataclass(frozen=True)
class Window:
    """A VOI mapping from modality values to display values in [0, 1].

    Either a linear/sigmoid window (``center``/``width``) or a lookup table (``lut_first``,
    ``lut``, ``lut_bits``), as given by the DICOM VOI LUT module, or a default chosen by us.
    """

    center: float | None = None
    width: float | None = None
    function: str = "LINEAR"  # DICOM VOILUTFunction: LINEAR, LINEAR_EXACT or SIGMOID
    lut_first: int | None = None  # first modality value the LUT maps
    lut: np.ndarray | None = None  # LUT entries (1D)
    lut_bits: int | None = None  # bits per LUT entry; output is scaled by 2**bits - 1


@dataclass(frozen=True)
class Encoding:
    """How stored values map to ``Record.pixels``; writers invert it exactly.

    For DICOM: ``pixels = slope * stored + intercept`` per frame (or through ``modality_lut``),
    then, for MONOCHROME1, ``pixels = invert_pivot - pixels`` so that brighter always means
    denser. Stored values are clipped to ``[stored_min, stored_max]`` when written back.
    """

    stored_min: float
    stored_max: float
    slopes: np.ndarray | None = None  # (S,) float64, one per frame/slice
    intercepts: np.ndarray | None = None
    modality_lut: tuple[int, np.ndarray] | None = None  # (first stored value mapped, entries)
    invert_pivot: float | None = None  # set for MONOCHROME1 sources
    pil_mode: str | None = None  # Pillow mode of PNG/JPEG/TIFF sources


@dataclass
class Record:
    """A decoded image or volume with what is needed to show it and to write it back.

    Attributes
    ----------
    key
        Stable id inside the release: the file's path relative to the release root, or that of
        the first slice followed by ``"#series"`` for a grouped DICOM series.
    paths
        Source file(s); slice order for volumes.
    kind
        Container format of the source.
    pixels
        float32 in modality units (HU for CT after rescale; MONOCHROME1 already inverted so
        bright means dense). Shapes: (H, W), (H, W, 3), (S, H, W) or (S, H, W, 3).
    modality
        DICOM Modality, or ``"OT"`` for plain images.
    source_dtype, bits_stored, photometric
        Stored sample type and depth and the photometric interpretation of the source
        (Pillow sources use ``"MONOCHROME2"`` or ``"RGB"``).
    metadata
        Small, JSON-able: DICOM identifiers and flags, or PNG text chunks / EXIF tags.
    encoding
        Stored-value mapping used by the writers.
    window
        VOI window from the file, or ``None`` for robust percentile scaling.
    """

    key: str
    paths: tuple[Path, ...]
    kind: Kind
    pixels: np.ndarray
    modality: str
    source_dtype: np.dtype
    bits_stored: int
    photometric: str
    metadata: dict[str, Any] = field(default_factory=dict)
    encoding: Encoding | None = None
    window: Window | None = None

    @property
    def is_volume(self) -> bool:
        """True for (S, H, W) and (S, H, W, 3) pixels."""
        channels = 1 if self.photometric.startswith("MONOCHROME") else 3
        return self.pixels.ndim == (3 if channels == 1 else 4)

    def display(self, pixels: np.ndarray | None = None) -> np.ndarray:
        """Map modality values to what a viewer would show, float32 in [0, 1].

        Parameters
        ----------
        pixels
            Values in this record's modality units (for example, scrubbed pixels);
            ``self.pixels`` when omitted.
        """
        from deid.io.display import to_display

        return to_display(self, self.pixels if pixels is None else pixels)
