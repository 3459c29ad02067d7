"""Phantom releases: phantom images written as DICOM and/or PNG with fake but realistic PHI
(headers, private tags, burned-in text, file names) and a truth CSV beside the release."""

from deid.synth.dicom import dicom_bytes, dicom_files, dicom_for
from deid.synth.layout import ReleaseFile, truth_path
from deid.synth.phi import PatientPHI, Person, SitePHI, VisitPHI, phi_for
from deid.synth.png import png_files
from deid.synth.release import FORMATS, ReleaseSummary, files_for, write_release
from deid.synth.uids import ImageUIDs, make_uid, uids_for

__all__ = [
    "FORMATS",
    "ImageUIDs",
    "PatientPHI",
    "Person",
    "ReleaseFile",
    "ReleaseSummary",
    "SitePHI",
    "VisitPHI",
    "dicom_bytes",
    "dicom_files",
    "dicom_for",
    "files_for",
    "make_uid",
    "phi_for",
    "png_files",
    "truth_path",
    "uids_for",
    "write_release",
]
