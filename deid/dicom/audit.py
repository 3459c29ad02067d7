"""Metadata audit for ``deid score``: what identifying metadata a release still carries.

Nothing here returns attribute values: findings name attributes and count them, so a report
built from them shows no PHI. Path tokens are the one exception, since they are what the user
must rename; the report decides whether to show them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field

import pydicom

from deid.dicom.burned_in import needs_quarantine
from deid.dicom.cleaning import SAFE_WORDS
from deid.dicom.table import PRIVATE_ROW, format_tag, row_for
from deid.dicom.values import has_value


@dataclass
class DicomFindings:
    """Metadata findings of one DICOM dataset.

    Attributes
    ----------
    action_counts : dict[str, int]
        Basic Profile action class ("X", "Z", "D", "U", "X/Z", ...) -> number of attribute
        occurrences with a value that Table E.1-1 covers (private attributes excluded).
    attributes : list[tuple[str, str, str]]
        (tag, name, action class) of each such occurrence, sequences included.
    private_tag_count : int
        Private data elements (odd group, creators excluded).
    private_creators : list[str]
        Distinct private creator identifiers, sorted.
    burned_in_annotation : str | None
        Value of Burned In Annotation (0028,0301), None when absent.
    patient_identity_removed : str | None
        Value of Patient Identity Removed (0012,0062), None when absent.
    burned_in_risk : str | None
        Why the pixels may carry identifying text (see :func:`needs_quarantine`).
    """

    action_counts: dict[str, int] = field(default_factory=dict)
    attributes: list[tuple[str, str, str]] = field(default_factory=list)
    private_tag_count: int = 0
    private_creators: list[str] = field(default_factory=list)
    burned_in_annotation: str | None = None
    patient_identity_removed: str | None = None
    burned_in_risk: str | None = None

    @property
    def identifying_count(self) -> int:
        """Attributes with a value that the profile would remove or replace (not K)."""
        return sum(n for action, n in self.action_counts.items() if action != "K")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        out = asdict(self)
        out["attributes"] = [list(a) for a in self.attributes]
        out["identifying_count"] = self.identifying_count
        return out


def audit_dataset(ds: pydicom.Dataset) -> DicomFindings:
    """Audit the metadata of ``ds`` against PS3.15 Table E.1-1.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset as read by pydicom (pixel data not needed).

    Returns
    -------
    DicomFindings
        Counts and names of profile attributes present with values, at any sequence depth,
        private tags and creators, and the burned-in and identity-removed flags.
    """
    findings = DicomFindings()
    counts: Counter[str] = Counter()
    creators: set[str] = set()

    def visit(item: pydicom.Dataset) -> None:
        for elem in item:
            tag = int(elem.tag)
            if elem.VR == "SQ":
                for child in elem.value or []:
                    visit(child)
            if tag >> 16 == 0x0002 or not has_value(elem):
                continue
            row = row_for(tag)
            if row is PRIVATE_ROW:
                if 0x0010 <= (tag & 0xFFFF) <= 0x00FF:
                    creators.add(str(elem.value).strip())
                else:
                    findings.private_tag_count += 1
            elif row is not None:
                counts[row.basic_action] += 1
                findings.attributes.append((format_tag(tag), row.name, row.basic_action))

    visit(ds)
    findings.action_counts = dict(sorted(counts.items()))
    findings.private_creators = sorted(creators)
    for keyword, attr in (
        ("BurnedInAnnotation", "burned_in_annotation"),
        ("PatientIdentityRemoved", "patient_identity_removed"),
    ):
        if keyword in ds:
            setattr(findings, attr, str(ds.get(keyword)).strip())
    findings.burned_in_risk = needs_quarantine(ds)
    return findings


_DATE = re.compile(
    r"(?<!\d)(?:19|20)\d\d[-_.]?(?:0[1-9]|1[0-2])[-_.]?(?:0[1-9]|[12]\d|3[01])(?!\d)"
    r"|(?<!\d)(?:0[1-9]|[12]\d|3[01])[-_.](?:0[1-9]|1[0-2])[-_.](?:19|20)\d\d(?!\d)"
)
# Dotted numbers with four or more components: original DICOM UIDs, which link back to the source.
_UID = re.compile(r"(?<![\d.])\d+(?:\.\d+){3,}(?![\d.])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(
    r"(?<![\w])(?:\+\d{1,3}[ ._-]?)?(?:\(\d{2,4}\)[ ._-]?|\d{2,4}[ ._-])\d{3,4}[ ._-]\d{3,4}(?![\w])"
)
_DIGITS = re.compile(r"(?<!\d)\d{6,}(?!\d)")
_WORDS = re.compile(r"[A-Za-z]+(?:[_^ ,-]+[A-Za-z]+){1,3}")
_NAME_PART = re.compile(r"[A-Z][a-z]+|[A-Z]{2,}")


def _name_like(candidate: str) -> bool:
    """Two to four alphabetic words, each capitalised or all capitals, none of them a known
    technical word (so "John_Smith" and "SMITH^JOHN" count, "CT_Head" and "MR_small" do not)."""
    parts = [p for p in re.split(r"[_^ ,-]+", candidate) if p]
    return (
        2 <= len(parts) <= 4
        and all(len(p) >= 2 and _NAME_PART.fullmatch(p) for p in parts)
        and not any(p.upper() in SAFE_WORDS for p in parts)
    )


def audit_path_tokens(relpath: str) -> list[str]:
    """PHI-looking tokens in a release-relative file path.

    Parameters
    ----------
    relpath : str
        Path of a file relative to the release root ("/" or "\\" separated).

    Returns
    -------
    list[str]
        ``"kind:token"`` entries, kind one of ``email``, ``uid`` (an original DICOM UID),
        ``date``, ``phone``, ``mrn`` (six or more digits in a row), ``name`` (NAME_SURNAME-like
        word pairs); in order of kind, each token once. The extension is ignored.
    """
    text = re.sub(r"\.[A-Za-z][A-Za-z0-9]{0,4}$", "", relpath.replace("\\", "/"))
    found: list[str] = []

    def add(kind: str, token: str) -> None:
        entry = f"{kind}:{token}"
        if entry not in found:
            found.append(entry)

    for match in _EMAIL.finditer(text):
        add("email", match.group())
    text = _EMAIL.sub("/", text)
    for match in _UID.finditer(text):
        add("uid", match.group())
    text = _UID.sub("/", text)
    for match in _DATE.finditer(text):
        add("date", match.group())
    text = _DATE.sub("/", text)
    for match in _PHONE.finditer(text):
        add("phone", match.group())
    text = _PHONE.sub("/", text)
    for match in _DIGITS.finditer(text):
        add("mrn", match.group())
    for segment in text.split("/"):
        for match in _WORDS.finditer(segment):
            if _name_like(match.group()):
                add("name", match.group())
    return found
