"""The original → pseudonym map, written only on request, beside the output, owner-only.

Whoever holds it can re-identify the safe copy, so it never goes inside the output folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from deid.errors import UnreadableFileError
from deid.io.atomic import atomic_write_text
from deid.io.dicom_read import read_dataset
from deid.scrub.folders import map_path
from deid.scrub.manifest import FileEntry
from deid.scrub.safe_copy import Job


def write_map(out: Path, job: Job, entries: list[FileEntry], names: dict[str, str]) -> Path:
    """Write ``<out>.map.json``: input path → output path and status, and DICOM Patient ID
    (or Patient's Name when there is no ID) → pseudonymous Patient ID.

    Parameters
    ----------
    out
        The output folder given by the user.
    job
        The run's job (release base and output folder).
    entries
        Manifest entries of the run.
    names
        Input id → input path relative to the release.

    Returns
    -------
    Path
        The map file (mode 0o600).
    """
    files: dict[str, dict[str, str]] = {}
    patients: dict[str, str] = {}
    for entry in sorted(entries, key=lambda e: names.get(e.input_id, e.input_id)):
        relative = names.get(entry.input_id, entry.input_id)
        files[relative] = {"status": entry.status, "output": entry.output, "id": entry.input_id}
        if entry.kind == "dicom" and entry.status == "written":
            original, pseudonym = _patient_pair(job.base / relative, job.out / entry.output)
            if original:
                patients[original] = pseudonym
    document = {"files": files, "patients": dict(sorted(patients.items()))}
    target = map_path(out)
    atomic_write_text(target, json.dumps(document, indent=1) + "\n", mode=0o600)
    return target


def _patient_pair(source: Path, output: Path) -> tuple[str, str]:
    try:
        before = read_dataset(source, pixels=False)
        after = read_dataset(output, pixels=False)
    except UnreadableFileError:
        return "", ""
    original = str(before.get("PatientID", "") or "").strip()
    original = original or str(before.get("PatientName", "") or "").strip()
    return original, str(after.get("PatientID", "") or "")
