"""Where files of a phantom release go, named the way careless exports name them: DICOM under
``<PatientID>/<StudyDate>_<Modality>_<Accession>/``, PNG files named after the patient."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deid.errors import OutputError
from deid.synth.phi import VisitPHI
from reid_model.phantoms.types import DATASETS, PhantomImage

# short examination tag of PNG file names
_PNG_TAGS: dict[str, str] = {
    "cxr_site_a": "cxr",
    "cxr_site_b": "chest_xray",
    "chest_ct": "ct_chest",
    "fundus": "fundus",
    "brain_mri": "mri_brain",
}


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release: path relative to the release folder, bytes, slice (volumes)."""

    path: PurePosixPath
    data: bytes
    slice: int | None = None


def truth_path(out: Path) -> Path:
    """Path of the answer key beside (never inside) the release folder ``out``.

    Raises
    ------
    OutputError
        If ``out`` has no name of its own (a filesystem root).
    """
    if not out.name:
        raise OutputError(f"{out}: cannot place the truth CSV beside a root; use a sub-folder")
    return out.with_name(f"{out.name}.truth.csv")


def dicom_study_folder(phi: VisitPHI, image: PhantomImage) -> PurePosixPath:
    """``<PatientID>/<YYYYMMDD>_<Modality>_<Accession>`` of one visit."""
    day = phi.study_datetime.strftime("%Y%m%d")
    modality = DATASETS[image.dataset]
    return PurePosixPath(phi.patient.patient_id) / f"{day}_{modality}_{phi.accession}"


def png_stem(phi: VisitPHI, image: PhantomImage) -> str:
    """``FAMILY_GIVEN_<PatientID>_<YYYY-MM-DD>_<exam>[_<eye>]``: PHI in the name, as it happens."""
    day = phi.study_datetime.strftime("%Y-%m-%d")
    tag = _PNG_TAGS.get(image.dataset, image.dataset)
    eye = f"_{image.laterality}" if image.laterality else ""
    return f"{phi.patient.name.file_token}_{phi.patient.patient_id}_{day}_{tag}{eye}"
