"""Metadata findings of a release: DICOM headers (PS3.15 attributes present, private tags,
burned-in annotation, identity-removed flag), PHI-looking path tokens, PNG/JPEG text and EXIF.

Findings name attributes and token *kinds*, never values: the report must not repeat the PHI
it found. Paths shown in the report have their PHI-looking tokens masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deid.errors import UnreadableFileError
from deid.io.record import ReleaseItem, Skipped
from deid.report.schema import Metadata
from deid.score.embed import Progress, Unit, no_progress

MASK = "[masked]"
# attributes whose value names or singles out a person directly (HIPAA Safe Harbor kinds)
DIRECT_IDENTIFIERS = frozenset(
    {
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "OtherPatientIDs",
        "OtherPatientNames",
        "OtherPatientIDsSequence",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientMotherBirthName",
        "MedicalRecordLocator",
        "PatientBirthName",
        "IssuerOfPatientID",
        "InsurancePlanIdentification",
        "MilitaryRank",
        "BranchOfService",
        "PatientInsurancePlanCodeSequence",
        "PersonName",
    }
)
_PLAIN_IMAGE_KINDS = ("png", "jpeg", "tiff")


def mask_path(relpath: str) -> str:
    """``relpath`` with every PHI-looking token (as found by the DICOM audit) masked."""
    from deid.dicom.audit import audit_path_tokens

    masked = relpath
    for token in sorted(set(audit_path_tokens(relpath)), key=len, reverse=True):
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


def _audit_dicom(path: Path, meta: Metadata) -> tuple[list[str], bool, str | None]:
    """Findings of one DICOM file, whether it holds a direct identifier, and its PatientID."""
    from deid.dicom.audit import audit_dataset
    from deid.io.dicom_read import read_dataset

    ds = read_dataset(path, pixels=False)
    found = audit_dataset(ds)
    findings: list[str] = []
    direct = False
    for keyword, action in found.present.items():
        meta["attributes_present"][keyword] = meta["attributes_present"].get(keyword, 0) + 1
        meta["action_counts"][action] = meta["action_counts"].get(action, 0) + 1
        if keyword in DIRECT_IDENTIFIERS:
            direct = True
    if found.present:
        shown = sorted(found.present)
        more = f" and {len(shown) - 8} more" if len(shown) > 8 else ""
        findings.append(f"PS3.15 attributes with values: {', '.join(shown[:8])}{more}")
    if found.private_tags:
        meta["private_tags_files"] += 1
        findings.append(f"{found.private_tags} private tags")
    if found.burned_in_annotation != "NO":
        meta["burned_in_annotation_files"] += 1
        findings.append(f"BurnedInAnnotation {found.burned_in_annotation or 'absent'}")
    if found.patient_identity_removed != "YES":
        meta["identity_not_removed_files"] += 1
        findings.append(f"PatientIdentityRemoved {found.patient_identity_removed or 'absent'}")
    patient_id = str(ds.get("PatientID", "") or "") or None
    return findings, direct, patient_id


def _audit_plain_image(path: Path, meta: Metadata) -> tuple[list[str], bool]:
    from PIL import Image

    from deid.dicom.audit import audit_path_tokens
    from deid.io.image_read import image_metadata

    with Image.open(path) as image:
        embedded = image_metadata(image)
    if not embedded:
        return [], False
    meta["embedded_text_files"] += 1
    # a text value with name/ID/date-like tokens counts as a direct identifier; values stay out
    direct = any(audit_path_tokens(str(value)) for value in embedded.values())
    kinds = ", ".join(sorted(embedded))
    return [
        f"embedded text or EXIF ({kinds})" + (", with PHI-looking values" if direct else "")
    ], direct


def audit_release(
    items: Sequence[ReleaseItem],
    skipped: Sequence[Skipped],
    root: Path,
    read_units: Sequence[Unit],
    progress: Progress = no_progress,
) -> tuple[Metadata, list[str] | None]:
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
    metadata : Metadata
        The report section.
    pseudonyms : list of str or None
        PatientID of each scored image (index-aligned with ``read_units``), or None when some
        image carries none (then linkage cannot rely on released pseudonyms).
    """
    from deid.dicom.audit import audit_path_tokens

    meta = _new_metadata()
    patient_of: dict[Path, str | None] = {}
    files = [(p, item.kind) for item in items for p in item.paths]
    files += [(Path(s.path), None) for s in skipped]
    for path, kind in progress(files, "auditing metadata", len(files)):
        rel = path.relative_to(root).as_posix() if path != root else path.name
        findings: list[str] = []
        direct = False
        meta["n_files"] += 1
        if audit_path_tokens(rel):
            meta["path_phi_files"] += 1
            findings.append("PHI-looking tokens in the file name or folders")
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
    pseudonyms = [patient_of.get(unit.paths[0]) for unit in read_units]
    if any(p is None for p in pseudonyms):
        return meta, None
    return meta, [p for p in pseudonyms if p is not None]
