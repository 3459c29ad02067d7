"""What the phantom generator yields. The generator renders pixels and labels; the release
writer (deid.synth) adds PHI, burned-in text, file formats and the truth CSV."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# dataset name -> DICOM modality of its files
DATASETS: dict[str, str] = {
    "cxr_site_a": "CR",  # chest radiograph, site A device style
    "cxr_site_b": "DX",  # chest radiograph, site B device style (same anatomy model)
    "chest_ct": "CT",  # chest CT volume
    "fundus": "OP",  # colour fundus photograph
    "brain_mri": "MR",  # brain MRI volume
}


@dataclass(frozen=True)
class PhantomImage:
    """One visit of one phantom patient in one dataset.

    ``pixels`` layout and type per dataset:
      cxr_site_a / cxr_site_b: (H, W) uint16, ``bits_stored`` significant bits, larger = brighter
      chest_ct: (S, H, W) int16 Hounsfield units
      brain_mri: (S, H, W) uint16, ``bits_stored`` significant bits
      fundus: (H, W, 3) uint8 RGB
    """

    dataset: str
    patient: str  # stable pseudonymous patient key, unique across datasets, e.g. "cxr_site_a-00012"
    patient_index: int  # index of the patient inside its dataset
    visit: int  # 0-based visit number, in time order
    split: str  # "train", "val" or "test" (patient-disjoint)
    pixels: np.ndarray
    bits_stored: int
    findings: dict[str, bool]
    days_since_first_visit: int
    pixel_spacing_mm: tuple[float, float]
    slice_thickness_mm: float | None = None  # volumes only
    slice_positions_mm: tuple[float, ...] | None = None  # volumes only, z of each slice
    laterality: str | None = None  # fundus eye "L"/"R"
    view_position: str | None = None  # radiographs "PA"/"AP"
    device: str = ""  # device style key, shared across patients of a site
    burn_in_phi: bool = False  # the release writer burns name/ID/date text into the pixels
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def is_volume(self) -> bool:
        return self.slice_positions_mm is not None
