"""Options of the Basic Application Level Confidentiality Profile (PS3.15 E.3) and their codes.

Each option maps to a code of CID 7050 "De-identification Method", which goes into the
De-identification Method Code Sequence of every de-identified file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

from deid.errors import InputError

# CID 7050 codes (coding scheme DCM).
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA_CODE = ("113101", "Clean Pixel Data Option")
OPTION_CODES: dict[str, tuple[str, str]] = {
    "clean_graphics": ("113103", "Clean Graphics Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_long_full_dates": (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    "retain_long_modified_dates": (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    "retain_patient_chars": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_id": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_institution_id": ("113112", "Retain Institution Identity Option"),
}


@dataclass(frozen=True)
class ProfileOptions:
    """Which PS3.15 profile options to apply on top of the Basic Profile.

    Attributes
    ----------
    retain_long_full_dates : bool
        Keep dates and times as they are (113106).
    retain_long_modified_dates : bool
        Shift dates by a per-patient keyed number of days, keeping intervals (113107).
    retain_patient_chars : bool
        Keep sex, age, size, weight and similar characteristics (113108).
    retain_device_id : bool
        Keep device serial numbers, station names and similar (113109).
    retain_institution_id : bool
        Keep institution name, address and department (113112).
    retain_uids : bool
        Keep UIDs instead of remapping them (113110).
    retain_safe_private : bool
        Keep the private attributes named in ``safe_private`` (113111); all others are removed.
    clean_descriptors : bool
        Keep free-text descriptions, cleaned to safe words (113105).
    clean_structured_content : bool
        Keep structured report content, with free text cleaned (113104).
    clean_graphics : bool
        Keep graphic annotations, with their text cleaned (113103).
    pixels_cleaned : bool
        Set by the caller when burned-in text was removed from the pixels (113101).
    safe_private : frozenset[tuple[str, int, int]]
        Explicit safe list for ``retain_safe_private``: (private creator, group, element low
        byte), e.g. ``("GEMS_PARM_01", 0x0043, 0x27)``. Empty unless the user gives one.
    """

    retain_long_full_dates: bool = False
    retain_long_modified_dates: bool = False
    retain_patient_chars: bool = False
    retain_device_id: bool = False
    retain_institution_id: bool = False
    retain_uids: bool = False
    retain_safe_private: bool = False
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    clean_graphics: bool = False
    pixels_cleaned: bool = False
    safe_private: frozenset[tuple[str, int, int]] = frozenset()

    def __post_init__(self) -> None:
        if self.retain_long_full_dates and self.retain_long_modified_dates:
            raise InputError(
                "the full-dates and modified-dates options exclude each other; choose one of "
                "retain-long-full-dates or retain-long-modified-dates"
            )

    @classmethod
    def option_names(cls) -> list[str]:
        """CLI spellings of the options that ``from_names`` accepts."""
        return [name.replace("_", "-") for name in OPTION_CODES]

    @classmethod
    def from_names(
        cls, names: Iterable[str], safe_private: Iterable[tuple[str, int, int]] = ()
    ) -> ProfileOptions:
        """Build options from CLI names such as ``retain-uids`` or ``clean-descriptors``.

        Parameters
        ----------
        names : Iterable[str]
            Option names (dashes or underscores); see :meth:`option_names`.
        safe_private : Iterable[tuple[str, int, int]]
            Safe list for ``retain-safe-private``.

        Raises
        ------
        InputError
            If a name is unknown or two options exclude each other.
        """
        chosen: dict[str, bool] = {}
        for raw in names:
            key = raw.strip().lower().replace("-", "_")
            if key not in OPTION_CODES:
                raise InputError(
                    f"unknown profile option {raw!r}; choose from {', '.join(cls.option_names())}"
                )
            chosen[key] = True
        return cls(**chosen, safe_private=frozenset(safe_private))

    def enabled(self) -> list[str]:
        """Field names of the enabled profile options, in declaration order."""
        return [f.name for f in fields(self) if f.name in OPTION_CODES and getattr(self, f.name)]

    def cid7050_codes(self) -> list[tuple[str, str]]:
        """(code value, code meaning) of CID 7050 for the Basic Profile and each applied option."""
        codes = [BASIC_PROFILE_CODE]
        if self.pixels_cleaned:
            codes.append(CLEAN_PIXEL_DATA_CODE)
        codes.extend(OPTION_CODES[name] for name in self.enabled())
        return sorted(codes)


def load_safe_private(path: str | os.PathLike[str]) -> frozenset[tuple[str, int, int]]:
    """Read a Retain Safe Private list: a JSON array of ``{"creator", "group", "element"}``.

    ``group`` is the odd group number and ``element`` the low byte of the element number
    within the creator's block, both as hex strings, e.g.
    ``[{"creator": "GEMS_PARM_01", "group": "0043", "element": "27"}]``.

    Raises
    ------
    InputError
        If the file is missing or an entry is malformed.
    """
    source = Path(path)
    try:
        entries = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the safe private list {source}: {exc}") from exc
    if not isinstance(entries, list):
        raise InputError(f"{source}: expected a JSON array of {{creator, group, element}}")
    safe: set[tuple[str, int, int]] = set()
    for index, entry in enumerate(entries):
        try:
            creator = str(entry["creator"]).strip()
            group, element = int(str(entry["group"]), 16), int(str(entry["element"]), 16)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"{source}: entry {index} needs creator, and group and element as hex strings"
            ) from exc
        if group % 2 == 0 or not 0 <= element <= 0xFF or not creator:
            raise InputError(
                f"{source}: entry {index} is not a private attribute (group must be odd, "
                "element a byte from 00 to FF, creator non-empty)"
            )
        safe.add((creator, group, element))
    return frozenset(safe)
