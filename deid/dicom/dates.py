"""Per-patient keyed date shifting (Retain Longitudinal Temporal Information, Modified Dates).

Every date of a patient moves back by the same keyed number of days, so intervals between a
patient's studies are preserved while the calendar dates are not. Times are left as they are
(a whole-day shift does not change the time of day).
"""

from __future__ import annotations

import datetime as dt

from deid.dicom.keys import keyed_digest

MAX_SHIFT_DAYS = 3650
DUMMY_DATE = "19000101"
DUMMY_TIME = "000000"
DUMMY_DATETIME = "19000101000000"


def shift_days(key: bytes, patient_key: str) -> int:
    """Number of days (1 .. MAX_SHIFT_DAYS) by which this patient's dates move back."""
    digest = keyed_digest(key, "date-shift", patient_key.strip())
    return 1 + int.from_bytes(digest[:8], "big") % MAX_SHIFT_DAYS


def shift_date(value: str, days: int) -> str | None:
    """Shift a DA value ("YYYYMMDD", also the old "YYYY.MM.DD") back by ``days``.

    Returns None when the value is not a valid date, so the caller can remove it instead of
    leaking it unchanged.
    """
    text = value.strip().replace(".", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        day = dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        return (day - dt.timedelta(days=days)).strftime("%Y%m%d")
    except (ValueError, OverflowError):
        return None


def shift_datetime(value: str, days: int) -> str | None:
    """Shift a DT value back by ``days``, keeping its precision, time and UTC offset.

    A DT with only a year or year and month is shifted by whole years (rounded) and keeps its
    precision. Returns None when the value is not a valid DT.
    """
    text = value.strip()
    if len(text) < 4 or not text[:4].isdigit():
        return None
    digits = len(text) - len(text.lstrip("0123456789"))
    if digits >= 8:
        shifted = shift_date(text[:8], days)
        return None if shifted is None else shifted + text[8:]
    years = round(days / 365.25)
    year = int(text[:4]) - years
    if year < 1:
        return None
    return f"{year:04d}" + text[4:]


def shift_values(values: list[str], days: int, vr: str) -> list[str] | None:
    """Shift each value of a multi-valued DA or DT; None if any value cannot be shifted."""
    shift = shift_date if vr == "DA" else shift_datetime
    out: list[str] = []
    for value in values:
        if not value.strip():
            out.append(value)
            continue
        shifted = shift(value, days)
        if shifted is None:
            return None
        out.append(shifted)
    return out
