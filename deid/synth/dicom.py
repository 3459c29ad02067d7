"""Phantom images as DICOM: one dataset per file (per slice for volumes), and their bytes."""

from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from deid.errors import InputError
from deid.synth.burn_in import burned_pixels
from deid.synth.checks import check_image
from deid.synth.dicom_common import (
    add_image_common,
    add_patient_study_series,
    add_private_phi,
    add_sop_common,
)
from deid.synth.dicom_iods import SOP_CLASS_UIDS, add_fundus, add_radiograph, add_volume_slice
from deid.synth.layout import ReleaseFile, dicom_study_folder
from deid.synth.phi import VisitPHI
from deid.synth.uids import ImageUIDs
from reid_model.phantoms.types import DATASETS, PhantomImage

IMPLEMENTATION_VERSION = "MAMI_DEID_SYNTH"


def dicom_for(image: PhantomImage, phi: VisitPHI, uids: ImageUIDs) -> list[Dataset]:
    """Return the DICOM datasets of ``image``, one per file.

    Parameters
    ----------
    image
        One visit of one phantom patient. Burned-in text is drawn when ``image.burn_in_phi``.
    phi
        Fake identity and visit details (see :func:`deid.synth.phi.phi_for`).
    uids
        Study, series, frame-of-reference and per-file SOP instance UIDs
        (see :func:`deid.synth.uids.uids_for`).

    Returns
    -------
    list of pydicom.Dataset
        One dataset per slice for CT and MR volumes, a single one otherwise, each with its file
        meta information (Explicit VR Little Endian).

    Raises
    ------
    InputError
        If the image breaks the layout of its dataset (see :func:`deid.synth.checks.check_image`)
        or the UIDs do not match the number of files.
    """
    check_image(image)
    modality = DATASETS[image.dataset]
    pixels = burned_pixels(image, phi)
    planes = list(pixels) if image.is_volume else [pixels]
    if len(planes) != len(uids.sop_instances):
        raise InputError(
            f"{image.patient} visit {image.visit}: {len(planes)} files but "
            f"{len(uids.sop_instances)} SOP instance UIDs; build the UIDs with uids_for(image)"
        )
    datasets = []
    for index, (plane, sop_uid) in enumerate(zip(planes, uids.sop_instances, strict=True)):
        ds = Dataset()
        add_sop_common(ds, SOP_CLASS_UIDS[modality], sop_uid, phi)
        add_patient_study_series(ds, image, phi, uids)
        add_image_common(ds, image, phi, index + 1)
        if modality in ("CR", "DX"):
            add_radiograph(ds, image, plane)
        elif modality == "OP":
            add_fundus(ds, image, plane)
        else:
            ds.FrameOfReferenceUID = uids.frame_of_reference
            add_volume_slice(ds, image, plane, index)
        add_private_phi(ds, phi)
        ds.file_meta = _file_meta(ds)
        datasets.append(ds)
    return datasets


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    return meta


def dicom_bytes(ds: Dataset) -> bytes:
    """Encode ``ds`` as a DICOM Part 10 file (preamble, file meta, Explicit VR Little Endian)."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def dicom_files(image: PhantomImage, phi: VisitPHI, uids: ImageUIDs) -> list[ReleaseFile]:
    """Return the DICOM file(s) of ``image`` as ``<PatientID>/<date>_<modality>_<acc>/IMnnnn.dcm``.

    Slices of a volume are numbered by InstanceNumber; 2D images are ``IM0001.dcm``.
    """
    folder = dicom_study_folder(phi, image)
    return [
        ReleaseFile(
            folder / f"IM{ds.InstanceNumber:04d}.dcm",
            dicom_bytes(ds),
            index if image.is_volume else None,
        )
        for index, ds in enumerate(dicom_for(image, phi, uids))
    ]
