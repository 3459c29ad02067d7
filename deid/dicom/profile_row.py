"""The row type of the confidentiality profile table and how a row's tag pattern matches a tag.

Action codes are those of PS3.15 Table E.1-1: X remove, Z zero length, D dummy value,
U replace UID consistently, K keep, C clean; "X/Z", "X/D", "Z/D", "X/Z/D" and "X/Z/U*" depend on
the attribute's type in the IOD (see :mod:`deid.dicom.iod_types`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Pattern of the table row that stands for every private attribute (odd group number).
PRIVATE_PATTERN = "private"

# Column names of the standard's table -> ProfileOptions field names.
OPTION_COLUMNS: dict[str, str] = {
    "rtnLongFullDatesOpt": "retain_long_full_dates",
    "rtnLongModifDatesOpt": "retain_long_modified_dates",
    "rtnPatCharsOpt": "retain_patient_chars",
    "rtnDevIdOpt": "retain_device_id",
    "rtnInstIdOpt": "retain_institution_id",
    "rtnUIDsOpt": "retain_uids",
    "rtnSafePrivOpt": "retain_safe_private",
    "cleanDescOpt": "clean_descriptors",
    "cleanStructContOpt": "clean_structured_content",
    "cleanGraphOpt": "clean_graphics",
}

BASIC_ACTIONS = frozenset({"X", "Z", "D", "U", "K", "C", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"})
OPTION_ACTIONS = frozenset({"K", "C"})


@dataclass(frozen=True)
class ProfileRow:
    """One row of PS3.15 Table E.1-1.

    Attributes
    ----------
    tag_pattern : str
        Eight lower-case hex digits ("00100020"), with ``x`` for any digit in repeating groups
        ("60xx3000"), or :data:`PRIVATE_PATTERN` for all private attributes.
    name : str
        The attribute's name as the standard spells it.
    basic_action : str
        Action of the Basic Profile (one of :data:`BASIC_ACTIONS`).
    option_actions : dict[str, str]
        ProfileOptions field name -> "K" or "C" for the options that change this row.
    in_std_comp_iod : bool
        Whether the attribute belongs to a standard composite IOD (the table's "in Std Comp IOD").
    """

    tag_pattern: str
    name: str
    basic_action: str
    option_actions: dict[str, str] = field(default_factory=dict)
    in_std_comp_iod: bool = True

    @property
    def is_exact(self) -> bool:
        """True when the pattern names a single tag (no wildcard, not the private row)."""
        return self.tag_pattern != PRIVATE_PATTERN and "x" not in self.tag_pattern

    def matches(self, tag: int) -> bool:
        """Whether the 32-bit ``tag`` (group << 16 | element) is covered by this row."""
        group = tag >> 16
        if self.tag_pattern == PRIVATE_PATTERN:
            return group % 2 == 1
        return all(p == "x" or p == d for p, d in zip(self.tag_pattern, f"{tag:08x}", strict=True))
