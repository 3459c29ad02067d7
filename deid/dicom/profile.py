"""Apply the Basic Application Level Confidentiality Profile (PS3.15 E.1-1) to a dataset.

Every attribute covered by the table is handled where it occurs, at the top level and inside
sequences at any depth; repeating groups (50xx curves, 60xx overlays) and private attributes
(removed unless on the Retain Safe Private list) included. Patient ID and Patient's Name become
keyed pseudonyms, UIDs are remapped under 2.25 by keyed derivation, and dates are either kept,
shifted per patient or replaced, depending on the options. Pixel Data is never touched.

Choices the standard leaves open: X/Z/U* reference sequences are kept with their UIDs remapped
(references stay resolvable); a sequence whose action is D keeps its items, each de-identified
by the profile with free text cleaned (a dummy that keeps required structure); removing Overlay
Data removes its whole 60xx group; file meta AE titles are removed.

The result depends only on the dataset, the options and the key: same inputs, same bytes.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.errors import BytesLengthException
from pydicom.sequence import Sequence

from deid import __version__
from deid.dicom.burned_in import needs_quarantine
from deid.dicom.cleaning import clean_text
from deid.dicom.dates import shift_days, shift_values
from deid.dicom.iod_types import resolve
from deid.dicom.options import ProfileOptions
from deid.dicom.profile_row import ProfileRow
from deid.dicom.pseudonyms import pseudonym_id, pseudonym_name
from deid.dicom.table import PRIVATE_ROW, format_tag, row_for
from deid.dicom.uids import remap_uid
from deid.dicom.values import DUMMY_TEXT, TEXT_VRS, has_value, set_dummy, set_empty
from deid.errors import InputError

__all__ = ["ActionLog", "ActionRecord", "PlannedAction", "deidentify", "needs_quarantine", "plan"]

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
OVERLAY_DATA_ELEMENT = 0x3000
# File meta AE titles name the sending and receiving devices; the table omits them, the
# profile removes them like the Station AE Title.
_META_AE_TITLES = (0x00020016, 0x00020017, 0x00020018)
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
# Free-text VRs cleaned inside cleaned structured content and graphics; LO, SH and CS there hold
# codes, code meanings and enumerated values, which are kept.
_FREE_TEXT_VRS = frozenset({"ST", "LT", "UT", "UC"})


class ActionRecord(NamedTuple):
    """What the profile did (or would do) to one attribute occurrence.

    Attributes
    ----------
    tag : str
        "(GGGG,EEEE)".
    name : str
        Attribute name from the profile table (or the data dictionary keyword).
    action : str
        Action applied: X removed, Z emptied, D dummy or pseudonym, U UID remapped, K kept,
        C cleaned (text cleaned, date shifted or safe private kept).
    path : str
        Where it occurs: "" at the top level, else the enclosing sequences with item indices,
        e.g. "(0008,1140)[0]".
    before_present : bool
        Whether the attribute held a non-empty value before.
    """

    tag: str
    name: str
    action: str
    path: str
    before_present: bool


PlannedAction = ActionRecord


@dataclass
class ActionLog:
    """Per-attribute actions of one :func:`deidentify` call, in dataset order."""

    records: list[ActionRecord] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of attribute occurrences per applied action."""
        return dict(sorted(Counter(r.action for r in self.records).items()))

    def to_list(self) -> list[dict[str, object]]:
        """JSON-ready records (no attribute values, so nothing identifying)."""
        return [r._asdict() for r in self.records]


# Decided actions by (options, SOP class, multi-frame), then by tag: a release repeats the same
# few IODs, and hashing the options once per file (not once per attribute) keeps the walk fast.
_ACTIONS: dict[tuple[ProfileOptions, str, bool], dict[int, str]] = {}


def _decide(tag: int, options: ProfileOptions, sop_class: str, multi_frame: bool) -> str:
    """Action for ``tag``: an enabled option's K wins over its C, which wins over the Basic
    Profile's action resolved by IOD type."""
    row = row_for(tag)
    if row is None:
        raise ValueError(f"{format_tag(tag)} is not in the profile table")
    chosen = {a for name, a in row.option_actions.items() if getattr(options, name)}
    if "K" in chosen:
        return "K"
    if "C" in chosen:
        return "C"
    if row.basic_action == "X/Z/U*":
        # Reference sequences are kept and their UIDs remapped, so references still resolve.
        return "U"
    return resolve(row.basic_action, sop_class, tag, multi_frame)


class _Scrubber:
    """One pass over one dataset; holds the per-file context (IOD, patient, log)."""

    def __init__(self, ds: pydicom.Dataset, options: ProfileOptions, key: bytes) -> None:
        self.options = options
        self.key = key
        self.sop_class = str(ds.get("SOPClassUID", "")).strip()
        self.multi_frame = "SharedFunctionalGroupsSequence" in ds
        # Pseudonyms and the date shift hang on the original patient identity.
        patient_id = str(ds.get("PatientID", "") or "").strip()
        self.patient_key = patient_id or str(ds.get("PatientName", "") or "").strip()
        self.days = shift_days(key, self.patient_key)
        self.log = ActionLog()
        if len(_ACTIONS) > 256:  # odd SOP class values must not grow the cache without bound
            _ACTIONS.clear()
        self.actions = _ACTIONS.setdefault((options, self.sop_class, self.multi_frame), {})

    # -- decisions ---------------------------------------------------------------------------

    def action_for(self, tag: int) -> str:
        """Final action for ``tag`` in this file (see :func:`_decide`)."""
        action = self.actions.get(tag)
        if action is None:
            action = self.actions[tag] = _decide(
                tag, self.options, self.sop_class, self.multi_frame
            )
        return action

    def safe_private(self, ds: pydicom.Dataset, tag: int) -> bool:
        """Whether private ``tag`` is on the Retain Safe Private list (or is a kept creator)."""
        group, element = tag >> 16, tag & 0xFFFF
        if 0x0010 <= element <= 0x00FF:  # a private creator: kept if one of its elements is
            return any(
                self.safe_private(ds, (group << 16) | (element << 8) | low)
                for (_c, g, low) in self.options.safe_private
                if g == group and ((group << 16) | (element << 8) | low) in ds
            )
        if element < 0x1000:
            return False
        creator = ds.get((group << 16) | (element >> 8))
        if creator is None:
            return False
        return (str(creator.value).strip(), group, element & 0xFF) in self.options.safe_private

    # -- the walk ----------------------------------------------------------------------------

    def walk(self, ds: pydicom.Dataset, path: str, clean_free_text: bool) -> None:
        """Apply the profile to every element of ``ds`` (one dataset or sequence item).

        Elements are decoded only when their value is needed: removing an element or skipping
        an untouched one works on pydicom's raw element, which keeps the scrub fast.
        """
        drop_groups: set[int] = set()
        for raw in list(ds.elements()):  # undecoded where pydicom has not decoded them yet
            tag = int(raw.tag)  # plain int: pydicom's BaseTag compares slowly
            if tag & 0xFFFF == 0 and tag >> 16 != 0x0002:
                del ds[raw.tag]  # group lengths would be stale; they are retired anyway
                continue
            if raw.VR in (None, "UN"):
                # Implicit VR, or UN (perhaps a sequence written by a tool that did not know
                # it): decode, so the real VR is known to the walk and to the writer.
                raw = _decode(ds, raw.tag)
            vr = raw.VR
            row = row_for(tag)
            if row is None:
                if vr == "SQ" or (clean_free_text and vr in _FREE_TEXT_VRS | {"PN"}):
                    self.untabled(ds, _decode(ds, raw.tag), path, clean_free_text)
                continue
            action = self.action_for(tag)
            name = row.name if row is not PRIVATE_ROW else "Private Attribute"
            if action == "X" and tag not in (PATIENT_ID, PATIENT_NAME):
                before = _raw_has_value(raw)
                del ds[raw.tag]  # a BaseTag: pydicom converts plain ints slowly
                applied = "X"
            else:
                elem = _decode(ds, raw.tag)
                before = has_value(elem)
                applied = self.apply(ds, elem, row, action, path, clean_free_text)
            if applied == "X" and (tag >> 24) == 0x60 and tag & 0xFFFF == OVERLAY_DATA_ELEMENT:
                drop_groups.add(tag >> 16)
            self.log.records.append(ActionRecord(format_tag(tag), name, applied, path, before))
        for tag in [t for t in list(ds.keys()) if t >> 16 in drop_groups]:
            # An overlay without its data is invalid; the whole repeating group goes.
            del ds[tag]
            self.log.records.append(
                ActionRecord(format_tag(tag), keyword_for_tag(tag) or "Overlay", "X", path, True)
            )

    def walk_items(self, elem: DataElement, path: str, clean_free_text: bool) -> None:
        for index, item in enumerate(elem.value or []):
            self.walk(item, f"{path}{format_tag(elem.tag)}[{index}]", clean_free_text)

    def untabled(
        self, ds: pydicom.Dataset, elem: DataElement, path: str, clean_free_text: bool
    ) -> None:
        """Attributes the table does not list are kept; inside cleaned structured content or
        graphics their free text is cleaned and person names removed."""
        if elem.VR == "SQ":
            self.walk_items(elem, path, clean_free_text)
            return
        if not clean_free_text or elem.VR not in _FREE_TEXT_VRS | {"PN"}:
            return
        before = has_value(elem)
        if elem.VR == "PN":
            del ds[elem.tag]
            action = "X"
        else:
            self.clean_text_value(elem)
            if not has_value(elem):  # e.g. an SR Text Value, required when present
                elem.value = DUMMY_TEXT
            action = "C"
        name = keyword_for_tag(elem.tag) or "Unknown"
        self.log.records.append(ActionRecord(format_tag(elem.tag), name, action, path, before))

    def apply(
        self,
        ds: pydicom.Dataset,
        elem: DataElement,
        row: ProfileRow,
        action: str,
        path: str,
        clean_free_text: bool,
    ) -> str:
        """Carry out ``action`` on ``elem``; return the action actually applied."""
        tag, vr = elem.tag, elem.VR
        if tag in (PATIENT_ID, PATIENT_NAME) and action in ("Z", "D"):
            make = pseudonym_id if tag == PATIENT_ID else pseudonym_name
            elem.value = make(self.key, self.patient_key)
            return "D"
        if action == "X":
            del ds[tag]
            return "X"
        if action == "K":
            if vr == "SQ":
                self.walk_items(elem, path, clean_free_text)
            return "K"
        if action == "U" or (action == "D" and vr == "UI"):
            if vr == "SQ":
                self.walk_items(elem, path, clean_free_text)
                return "U"
            if vr == "UI":
                self.remap_uids(elem)
                return "U"
            action = "D"  # a U row with a non-UI VR (malformed file): dummy it
        if action == "C":
            return self.clean(ds, elem, row, path)
        if action == "D" and vr == "SQ":
            # A dummy sequence: same items, each de-identified, with free text cleaned.
            self.walk_items(elem, path, clean_free_text=True)
            return "D"
        if action == "D" and set_dummy(elem):
            return "D"
        set_empty(elem)  # Z, or D for a VR without a dummy value
        return "Z"

    def clean(self, ds: pydicom.Dataset, elem: DataElement, row: ProfileRow, path: str) -> str:
        """The C action, by what the attribute holds."""
        tag, vr = elem.tag, elem.VR
        if row is PRIVATE_ROW:
            if self.safe_private(ds, tag):
                return "C"
            del ds[tag]
            return "X"
        if vr == "SQ":
            self.walk_items(elem, path, clean_free_text=True)
            return "C"
        if vr in ("DA", "DT") and self.options.retain_long_modified_dates:
            values = [str(v) for v in _as_list(elem.value)]
            shifted = shift_values(values, self.days, vr)
            if shifted is None:  # unparseable: do not leak it unshifted
                set_empty(elem)
                return "Z"
            elem.value = shifted if len(shifted) != 1 else shifted[0]
            return "C"
        if vr == "TM" and self.options.retain_long_modified_dates:
            return "C"  # a whole-day shift keeps the time of day
        if vr in TEXT_VRS:
            self.clean_text_value(elem)
            return "C"
        if vr == "PN" or vr in _BINARY_VRS:
            # Names and binary blobs (maker notes, overlay bitmaps, curves) cannot be cleaned
            # word by word here; remove them.
            del ds[tag]
            return "X"
        return "C"  # numbers and codes kept under a characteristics/device option

    def clean_text_value(self, elem: DataElement) -> None:
        cleaned = [clean_text(str(v)) for v in _as_list(elem.value)]
        cleaned = [c for c in cleaned if c]
        elem.value = cleaned[0] if len(cleaned) == 1 else (cleaned or None)

    def remap_uids(self, elem: DataElement) -> None:
        values = [remap_uid(self.key, str(v)) for v in _as_list(elem.value)]
        elem.value = values[0] if len(values) == 1 else values


def _decode(ds: pydicom.Dataset, tag: int) -> DataElement:
    """The decoded element; a value pydicom cannot decode stops this file with a clear error
    rather than leaving it unprocessed."""
    try:
        return ds[tag]
    except (BytesLengthException, OSError, ValueError, NotImplementedError) as exc:
        raise InputError(
            f"attribute {format_tag(tag)} cannot be decoded ({exc}); the file cannot be "
            "de-identified safely: repair it (e.g. with dcmodify) or leave it out of the release"
        ) from exc


def _raw_has_value(raw: DataElement | RawDataElement) -> bool:
    """Whether a possibly undecoded element holds a value, without decoding it."""
    if isinstance(raw, RawDataElement):
        return raw.length not in (0, None) and bool(raw.value)
    return has_value(raw)


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)  # type: ignore[call-overload]


def _mark(ds: pydicom.Dataset, options: ProfileOptions) -> None:
    """Set the attributes that declare what was done (PS3.15 E.1.1 and CID 7050)."""
    codes = options.cid7050_codes()
    items = []
    for value, meaning in codes:
        item = pydicom.Dataset()
        item.add_new(0x00080100, "SH", value)  # Code Value
        item.add_new(0x00080102, "SH", "DCM")  # Coding Scheme Designator
        item.add_new(0x00080104, "LO", meaning)  # Code Meaning
        items.append(item)
    if options.retain_long_full_dates:
        temporal = "UNMODIFIED"
    elif options.retain_long_modified_dates:
        temporal = "MODIFIED"
    else:
        temporal = "REMOVED"
    methods = [f"mami-deid {__version__}"] + [meaning for _, meaning in codes]
    ds.add_new(0x00120062, "CS", "YES")  # Patient Identity Removed
    ds.add_new(0x00120063, "LO", methods)  # De-identification Method
    ds.add_new(0x00120064, "SQ", Sequence(items))  # De-identification Method Code Sequence
    ds.add_new(0x00280303, "CS", temporal)  # Longitudinal Temporal Information Modified


def deidentify(ds: pydicom.Dataset, options: ProfileOptions, key: bytes) -> ActionLog:
    """De-identify ``ds`` in place and return what was done to each profile attribute.

    Parameters
    ----------
    ds : pydicom.Dataset
        The dataset to change; pass a copy if the original is still needed. Its file meta
        information (Media Storage SOP Instance UID) is remapped too.
    options : ProfileOptions
        Profile options on top of the Basic Profile.
    key : bytes
        Secret key of the release (see :mod:`deid.dicom.keys`): pseudonyms, UIDs and date
        shifts are keyed by it, so the same key keeps them consistent across files.

    Returns
    -------
    ActionLog
        One record per attribute occurrence the table covers, with no values.
    """
    scrubber = _Scrubber(ds, options, key)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        scrubber.walk(meta, "file_meta:", clean_free_text=False)
        for tag in _META_AE_TITLES:
            if tag in meta:
                before = has_value(meta[tag])
                del meta[tag]
                name = keyword_for_tag(tag)
                scrubber.log.records.append(
                    ActionRecord(format_tag(tag), name, "X", "file_meta:", before)
                )
    scrubber.walk(ds, "", clean_free_text=False)
    _mark(ds, options)
    return scrubber.log


def plan(ds: pydicom.Dataset, options: ProfileOptions, key: bytes) -> list[PlannedAction]:
    """What :func:`deidentify` would do to ``ds``, without changing it (a dry run)."""
    return deidentify(copy.deepcopy(ds), options, key).records
