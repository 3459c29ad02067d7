"""DICOM modules shared by every phantom IOD: Patient, General Study, Patient Study, General
Series, General Equipment, General Acquisition, General Image, SOP Common, Image Pixel and a
private block that carries PHI (as some vendors' private groups do)."""

from __future__ import annotations

import datetime as dt

import numpy as np
from pydicom.dataset import Dataset

from deid.synth.phi import VisitPHI
from deid.synth.uids import ImageUIDs
from reid_model.phantoms.types import DATASETS, PhantomImage

PRIVATE_CREATOR = "MAMI PHANTOM PHI"
PRIVATE_GROUP = 0x0009

# dataset -> (study description, series description, body part examined)
_DESCRIPTIONS: dict[str, tuple[str, str, str]] = {
    "cxr_site_a": ("XR CHEST 1 VIEW", "CHEST", "CHEST"),
    "cxr_site_b": ("XR CHEST 1 VIEW", "Thorax", "CHEST"),
    "chest_ct": ("CT CHEST WO CONTRAST", "Thorax 1.0 B60f", "CHEST"),
    "fundus": ("FUNDUS PHOTOGRAPHY", "Colour fundus 45deg", "EYE"),
    "brain_mri": ("MRI BRAIN WO CONTRAST", "t1_se_tra", "BRAIN"),
}
# series number per dataset, as a site's protocol would number them
_SERIES_NUMBER: dict[str, int] = {
    "cxr_site_a": 1,
    "cxr_site_b": 1001,
    "chest_ct": 2,
    "fundus": 1,
    "brain_mri": 3,
}


def da(value: dt.date) -> str:
    """DICOM DA: ``YYYYMMDD``."""
    return value.strftime("%Y%m%d")


def tm(value: dt.datetime) -> str:
    """DICOM TM: ``HHMMSS``."""
    return value.strftime("%H%M%S")


def ds_number(value: float) -> str:
    """DICOM DS string of at most 16 characters."""
    text = f"{value:.6g}"
    return text if len(text) <= 16 else f"{value:.4e}"


def add_patient_study_series(
    ds: Dataset, image: PhantomImage, phi: VisitPHI, uids: ImageUIDs
) -> None:
    """Patient, General Study, Patient Study, General Series and General Equipment modules."""
    patient, site = phi.patient, phi.site
    study_desc, series_desc, body_part = _DESCRIPTIONS[image.dataset]
    start = phi.study_datetime
    ds.PatientName = patient.name.dicom
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = site.institution
    ds.PatientBirthDate = da(patient.birth_date)
    ds.PatientSex = patient.sex
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.phone
    ds.PatientAge = phi.age_string
    ds.PatientSize = ds_number(patient.height_m)
    ds.PatientWeight = ds_number(patient.weight_kg)

    ds.StudyInstanceUID = uids.study
    ds.StudyDate = da(start.date())
    ds.StudyTime = tm(start)
    ds.ReferringPhysicianName = patient.referring_physician.dicom
    ds.StudyID = phi.study_id
    ds.AccessionNumber = phi.accession
    ds.StudyDescription = study_desc
    ds.NameOfPhysiciansReadingStudy = phi.reading_physician.dicom

    series_start = start + dt.timedelta(minutes=2)
    ds.Modality = DATASETS[image.dataset]
    ds.SeriesInstanceUID = uids.series
    ds.SeriesNumber = _SERIES_NUMBER[image.dataset]
    ds.SeriesDate = da(series_start.date())
    ds.SeriesTime = tm(series_start)
    ds.SeriesDescription = series_desc
    ds.ProtocolName = study_desc
    ds.BodyPartExamined = body_part
    ds.PerformingPhysicianName = phi.performing_physician.dicom
    ds.OperatorsName = phi.operator.dicom

    ds.Manufacturer = site.manufacturer
    ds.InstitutionName = site.institution
    ds.InstitutionAddress = site.address
    ds.InstitutionalDepartmentName = site.department
    ds.StationName = site.station_name
    ds.ManufacturerModelName = site.model
    ds.DeviceSerialNumber = site.device_serial
    ds.SoftwareVersions = site.software


def add_image_common(ds: Dataset, image: PhantomImage, phi: VisitPHI, instance_number: int) -> None:
    """General Acquisition and General Image modules (timestamps a few minutes after the study)."""
    acquired = phi.study_datetime + dt.timedelta(minutes=3, seconds=instance_number)
    ds.AcquisitionDate = da(acquired.date())
    ds.AcquisitionTime = tm(acquired)
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance_number
    ds.ContentDate = da(acquired.date())
    ds.ContentTime = tm(acquired)
    ds.BurnedInAnnotation = "YES" if image.burn_in_phi else "NO"


def add_sop_common(ds: Dataset, sop_class: str, sop_instance: str, phi: VisitPHI) -> None:
    """SOP Common module; UTF-8 character set because names may be non-ASCII."""
    created = phi.study_datetime + dt.timedelta(minutes=30)  # after the last slice is acquired
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.InstanceCreationDate = da(created.date())
    ds.InstanceCreationTime = tm(created)


def add_pixels(ds: Dataset, pixels: np.ndarray, bits_stored: int, photometric: str) -> None:
    """Image Pixel module from a (H, W) grey or (H, W, 3) uint8 RGB array, little-endian."""
    rgb = pixels.ndim == 3
    signed = pixels.dtype.kind == "i"
    bits_allocated = 8 if pixels.dtype.itemsize == 1 else 16
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = photometric
    if rgb:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    dtype = f"<{'i' if signed else 'u'}{bits_allocated // 8}"
    data = np.ascontiguousarray(pixels, dtype=dtype).tobytes()
    if len(data) % 2:  # DICOM values have even length
        data += b"\x00"
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"


def add_private_phi(ds: Dataset, phi: VisitPHI) -> None:
    """Private block ``MAMI PHANTOM PHI`` in group 0009 repeating the patient's identity."""
    patient = phi.patient
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "PN", patient.name.dicom)
    block.add_new(0x02, "LO", patient.patient_id)
    block.add_new(0x03, "DA", da(patient.birth_date))
    block.add_new(0x04, "LO", patient.address)
    note = (
        f"{patient.name.display}, MRN {patient.patient_id}, born "
        f"{patient.birth_date.isoformat()}; referred by "
        f"{patient.referring_physician.display}; acc. {phi.accession}"
    )
    block.add_new(0x05, "LT", note)


def window(pixels: np.ndarray) -> tuple[float, float]:
    """Window centre and width covering the 1st-99th percentile of ``pixels``."""
    lo, hi = np.percentile(pixels, [1.0, 99.0])
    width = max(float(hi - lo), 1.0)
    return float(lo) + width / 2.0, width
