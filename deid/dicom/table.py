"""Lookup of the profile table row that covers a tag."""

from __future__ import annotations

import functools

from deid.dicom.profile_row import PRIVATE_PATTERN, ProfileRow
from deid.dicom.profile_table import ROWS

EXACT: dict[int, ProfileRow] = {int(r.tag_pattern, 16): r for r in ROWS if r.is_exact}
REPEATING: tuple[ProfileRow, ...] = tuple(
    r for r in ROWS if not r.is_exact and r.tag_pattern != PRIVATE_PATTERN
)
PRIVATE_ROW: ProfileRow = next(r for r in ROWS if r.tag_pattern == PRIVATE_PATTERN)

# High bytes of the repeating groups (50xx curves, 60xx overlays).
_REPEATING_HIGH = frozenset(int(r.tag_pattern[:2], 16) for r in REPEATING)


def row_for(tag: int) -> ProfileRow | None:
    """The row of PS3.15 Table E.1-1 covering ``tag``, or None if the table does not list it."""
    group = tag >> 16
    if group % 2 == 1:
        return PRIVATE_ROW
    row = EXACT.get(tag)
    if row is not None or (group >> 8) not in _REPEATING_HIGH:
        return row
    return next((r for r in REPEATING if r.matches(tag)), None)


@functools.lru_cache(maxsize=8192)
def format_tag(tag: int) -> str:
    """ "(GGGG,EEEE)" spelling of a 32-bit tag."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
