"""Keyed remapping of UIDs under the 2.25 root (UUID-derived UIDs, PS3.5 B.2).

The same UID maps to the same new UID everywhere in a release (same key), so references in
sequences still point at the right object; without the key the map cannot be inverted or
recomputed. Well-known DICOM UIDs (1.2.840.10008.*) are never remapped.
"""

from __future__ import annotations

from deid.dicom.keys import keyed_digest

WELL_KNOWN_ROOT = "1.2.840.10008."


def remap_uid(key: bytes, uid: str) -> str:
    """Return the 2.25 UID that ``uid`` maps to under ``key``.

    128 bits of the keyed digest, as a decimal integer after "2.25." (at most 44 characters).
    Empty values and well-known DICOM UIDs are returned unchanged.
    """
    uid = uid.strip().rstrip("\x00")
    if not uid or uid.startswith(WELL_KNOWN_ROOT):
        return uid
    value = int.from_bytes(keyed_digest(key, "uid", uid)[:16], "big")
    return f"2.25.{value}"
