"""The safe copy: DICOM metadata de-identified (PS3.15), PNG/JPEG/TIFF/NIfTI metadata stripped, keyed
pseudonymous names, atomic and resumable writes, and a manifest of what was done.

Pixel identity removal plugs in through ``pixel_cleaner`` (see :func:`scrub_release`).
"""

from deid.scrub.manifest import FileEntry, RunHeader
from deid.scrub.pipeline import Problem, ScrubSummary, scrub_release
from deid.scrub.safe_copy import Job, PixelCleaner

__all__ = [
    "FileEntry",
    "Job",
    "PixelCleaner",
    "Problem",
    "RunHeader",
    "ScrubSummary",
    "scrub_release",
]
