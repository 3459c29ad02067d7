"""Output names that carry no PHI: keyed tokens in place of patient names, IDs and UIDs.

Every name is derived with the release key (HMAC), so it is stable across runs and resumes with
the same key, and cannot be recomputed from a guessed identifier without the key.
"""

from __future__ import annotations

import base64
import re
from pathlib import PurePosixPath

from deid.dicom.keys import keyed_digest

# Extension of the plain-image outputs, by kind.
PLAIN_SUFFIXES: dict[str, str] = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "nifti": ".nii"}
PLAIN_FOLDER = "images"
_SAFE = re.compile(r"[^A-Z0-9]")


def token(key: bytes, domain: str, value: str, length: int = 16) -> str:
    """Upper-case base32 token of ``value`` under ``key`` (``length`` <= 32 characters)."""
    digest = keyed_digest(key, domain, value)
    return base64.b32encode(digest[:20]).decode("ascii")[:length]


def input_id(key: bytes, relative: str) -> str:
    """Id of an input file (its path inside the release) that can be published: keyed."""
    return token(key, "scrub-input", relative, 20)


def key_fingerprint(key: bytes) -> str:
    """Tells two keys apart without revealing either (HMAC of a constant)."""
    return token(key, "scrub-key-check", "", 12)


def dicom_output_path(
    key: bytes, patient_id: str, study_uid: str, series_uid: str, relative: str
) -> PurePosixPath:
    """``<patient pseudonym>/ST<study token>/SE<series token>/<file token>.dcm``.

    ``patient_id`` is the pseudonymous Patient ID of the scrubbed data set; study and series
    folders are keyed tokens of the original UIDs (so grouping follows the input's); the file
    name is a keyed token of the input path, unique even for duplicate SOP Instance UIDs.
    """
    patient = _SAFE.sub("", patient_id.upper()) or "NOPATIENTID"
    study, series = study_uid.strip(), series_uid.strip()
    return PurePosixPath(
        patient,
        "ST" + (token(key, "scrub-study", study, 12) if study else "UNKNOWN"),
        "SE" + (token(key, "scrub-series", series, 12) if series else "UNKNOWN"),
        token(key, "scrub-file", relative) + ".dcm",
    )


def plain_output_path(key: bytes, relative: str, suffix: str) -> PurePosixPath:
    """``images/<file token><suffix>`` for a PNG, JPEG, TIFF or NIfTI input (the input's folders
    can hold PHI too, so none of them is kept)."""
    return PurePosixPath(PLAIN_FOLDER, token(key, "scrub-file", relative) + suffix)
