"""Keyed pseudonyms for Patient ID and Patient's Name.

Both are derived from one patient key (the original Patient ID, or the name when there is no
ID), so all files of a patient get the same pseudonyms, and without the secret key a pseudonym
cannot be recomputed from a guessed identifier (unlike a plain hash). Files with neither an ID
nor a name share one pseudonym (and one date shift).
"""

from __future__ import annotations

import base64

from deid.dicom.keys import keyed_digest

# 10 bytes -> 16 base32 characters: 80 bits, no collisions at any realistic release size.
_TOKEN_BYTES = 10


def patient_token(key: bytes, patient_key: str) -> str:
    """A 16-character upper-case base32 token for the patient, keyed by ``key``."""
    digest = keyed_digest(key, "patient", patient_key.strip())
    return base64.b32encode(digest[:_TOKEN_BYTES]).decode("ascii")


def pseudonym_id(key: bytes, patient_key: str) -> str:
    """Pseudonymous Patient ID (LO, 17 characters)."""
    return "P" + patient_token(key, patient_key)


def pseudonym_name(key: bytes, patient_key: str) -> str:
    """Pseudonymous Patient's Name (PN): family name ``ANON``, given name the patient token."""
    return "ANON^" + patient_token(key, patient_key)
