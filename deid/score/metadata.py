"""Metadata findings of a release: DICOM headers (PS3.15 attributes present, private tags,
burned-in annotation, identity-removed flag), PHI-looking path tokens, PNG/JPEG text and EXIF.

Findings name attributes and token *kinds*, never values: the report must not repeat the PHI
it found. Paths shown in the report have their PHI-looking tokens masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deid.errors import UnreadableFileError
from deid.io.record import ReleaseItem, Skipped
from deid.report.schema import Metadata
from deid.score.embed import Progress, Unit, no_progress

MASK = "[masked]"
# attributes whose value names or singles out a person directly (HIPAA Safe Harbor kinds)
DIRECT_IDENTIFIER_TAGS = frozenset(
    {
        0x00100010,  # PatientName
        0x00100020,  # PatientID
        0x00100021,  # IssuerOfPatientID
        0x00100030,  # PatientBirthDate
        0x00101000,  # OtherPatientIDs
        0x00101001,  # OtherPatientNames
        0x00101002,  # OtherPatientIDsSequence
        0x00101005,  # PatientBirthName
        0x00101040,  # PatientAddress
        0x00101050,  # InsurancePlanIdentification
        0x00101060,  # PatientMotherBirthName
        0x00101090,  # MedicalRecordLocator
        0x00102154,  # PatientTelephoneNumbers
    }
)
_PLAIN_IMAGE_KINDS = ("png", "jpeg", "tiff")


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, token) of each PHI-looking token in ``text`` (see ``audit_path_tokens``)."""
    from deid.dicom.audit import audit_path_tokens

    return [tuple(entry.split(":", 1)) for entry in audit_path_tokens(text)]  # type: ignore[misc]


def mask_path(relpath: str) -> str:
    """``relpath`` with every PHI-looking token (name, date, ID, phone, e-mail) masked."""
    masked = relpath
    for _, token in sorted(_tokens(relpath), key=lambda kt: len(kt[1]), reverse=True):
        masked = masked.replace(token, MASK)
    return masked


def _new_metadata() -> Metadata:
    return {
        "n_files": 0,
        "n_dicom": 0,
        "action_counts": {},
        "attributes_present": {},
        "private_tags_files": 0,
        "burned_in_annotation_files": 0,
        "identity_not_removed_files": 0,
        "path_phi_files": 0,
        "embedded_text_files": 0,
        "direct_identifier_files": 0,
        "per_file": [],
    }


def _audit_dicom(path: Path, meta: Metadata) -> tuple[list[str], bool, tuple[str, str] | None]:
    """Findings of one DICOM file, whether it holds a direct identifier, and its (PatientID,
    study date and time) when it has a PatientID."""
    from deid.dicom.audit import audit_dataset
    from deid.io.dicom_read import read_dataset

    ds = read_dataset(path, pixels=False)
    found = audit_dataset(ds)
    findings: list[str] = []
    for action, count in found.action_counts.items():
        meta["action_counts"][action] = meta["action_counts"].get(action, 0) + count
    names = sorted({name for _, name, _ in found.attributes})
    for name in names:
        meta["attributes_present"][name] = meta["attributes_present"].get(name, 0) + 1
    declared_removed = (found.patient_identity_removed or "").upper() == "YES"
    # tags are spelled "(GGGG,EEEE)"; in a file declared de-identified these values are taken to
    # be the pseudonyms and dummies that PS3.15 puts in their place
    direct = not declared_removed and any(
        int(tag[1:5] + tag[6:10], 16) in DIRECT_IDENTIFIER_TAGS for tag, _, _ in found.attributes
    )
    if names:
        more = f" and {len(names) - 6} more" if len(names) > 6 else ""
        findings.append(f"{found.identifying_count} PS3.15 values: {', '.join(names[:6])}{more}")
    if found.private_tag_count:
        meta["private_tags_files"] += 1
        findings.append(f"{found.private_tag_count} private tags")
    if found.burned_in_risk is not None:
        meta["burned_in_annotation_files"] += 1
        findings.append(f"possible burned-in text: {found.burned_in_risk}")
    if not declared_removed:
        meta["identity_not_removed_files"] += 1
        findings.append(f"PatientIdentityRemoved {found.patient_identity_removed or 'absent'}")
    patient_id = str(ds.get("PatientID", "") or "").strip()
    when = f"{ds.get('StudyDate', '') or ''}{ds.get('StudyTime', '') or ''}"
    return findings, direct, ((patient_id, when) if patient_id else None)


def _audit_plain_image(path: Path, meta: Metadata) -> tuple[list[str], bool]:
    from PIL import Image

    from deid.io.image_read import image_metadata

    with Image.open(path) as image:
        embedded = image_metadata(image)
    if not embedded:
        return [], False
    meta["embedded_text_files"] += 1
    # values with name/ID/date-like tokens count as direct identifiers; the values stay out
    kinds = sorted({kind for value in embedded.values() for kind, _ in _tokens(str(value))})
    found = f"embedded text or EXIF ({', '.join(sorted(embedded))})"
    if kinds:
        found += f" with {'/'.join(kinds)}-like values"
    return [found], bool(kinds)


@dataclass(frozen=True)
class ReleaseAudit:
    """What :func:`audit_release` found. Identifiers stay in memory: they are never reported."""

    metadata: Metadata
    # PatientID of each scored image, None when some image has none
    pseudonyms: list[str] | None
    # StudyDate + StudyTime of each scored image ("" when absent), to order visits
    study_times: list[str]


def audit_release(
    items: Sequence[ReleaseItem],
    skipped: Sequence[Skipped],
    root: Path,
    read_units: Sequence[Unit],
    progress: Progress = no_progress,
) -> ReleaseAudit:
    """Audit every file of a release.

    Parameters
    ----------
    items, skipped : sequences
        What discovery found; skipped files are audited for path tokens only.
    root : Path
        Release root (paths in the report are relative to it).
    read_units : sequence of Unit
        The scored images, in embedding order, for the released pseudonyms.
    progress : Progress
        Progress bar wrapper.

    Returns
    -------
    ReleaseAudit
        The report section, and the PatientID and study time of each scored image
        (index-aligned with ``read_units``).
    """
    meta = _new_metadata()
    patient_of: dict[Path, tuple[str, str] | None] = {}
    files = [(p, item.kind) for item in items for p in item.paths]
    files += [(Path(s.path), None) for s in skipped]
    for path, kind in progress(files, "auditing metadata", len(files)):
        rel = path.relative_to(root).as_posix() if path != root else path.name
        findings: list[str] = []
        direct = False
        meta["n_files"] += 1
        path_kinds = sorted({k for k, _ in _tokens(rel)})
        if path_kinds:
            meta["path_phi_files"] += 1
            findings.append(f"{'/'.join(path_kinds)}-like tokens in the file name or folders")
            direct = True
        try:
            if kind == "dicom":
                meta["n_dicom"] += 1
                header, header_direct, patient_of[path] = _audit_dicom(path, meta)
                findings += header
                direct = direct or header_direct
            elif kind in _PLAIN_IMAGE_KINDS:
                text, text_direct = _audit_plain_image(path, meta)
                findings += text
                direct = direct or text_direct
        except (UnreadableFileError, OSError) as exc:
            findings.append(f"metadata not readable ({getattr(exc, 'reason', exc)})")
        if direct:
            meta["direct_identifier_files"] += 1
        if findings:
            meta["per_file"].append({"path": mask_path(rel), "findings": findings})
    ids = [patient_of.get(unit.paths[0]) for unit in read_units]
    pseudonyms = None if any(i is None for i in ids) else [i[0] for i in ids if i is not None]
    return ReleaseAudit(meta, pseudonyms, [i[1] if i is not None else "" for i in ids])
