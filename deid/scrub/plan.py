"""``--dry-run``: what a scrub would do to each attribute of each file, written to
``<out>.plan.json`` beside the output (owner-only: it names the input files). No image is
written and the output folder is not created."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from deid.dicom.burned_in import needs_quarantine
from deid.dicom.profile import deidentify
from deid.errors import UnreadableFileError
from deid.io.atomic import atomic_write_text
from deid.io.dicom_read import read_dataset
from deid.io.discover import Discovery
from deid.scrub.folders import plan_path
from deid.scrub.naming import PLAIN_SUFFIXES, dicom_output_path, plain_output_path
from deid.scrub.nifti_header import is_gzip, strip_nifti
from deid.scrub.plain_images import metadata_keys
from deid.scrub.safe_copy import SAME_SERIES, Job


def write_plan(out: Path, job: Job, found: Discovery) -> Path:
    """Plan every file of ``found`` and write the plan; return its path.

    The plan lists, per file, the output it would get (or why it would be quarantined or
    skipped) and one record per attribute occurrence: tag, name, action (X removed, Z emptied,
    D dummy/pseudonym, U UID remapped, K kept, C cleaned) and where it occurs. Values are never
    included. ``attributes`` sums the actions per attribute name over the release.
    """
    files: list[dict[str, Any]] = []
    totals: dict[str, Counter[str]] = {}
    for item in found.items:
        planned = [_plan_file(path, item.kind, job) for path in item.paths]
        if any(entry["status"] == "quarantine" for entry in planned):
            for entry in planned:  # as in a real run, a series is held back as a whole
                if entry["status"] == "write":
                    entry.update(status="quarantine", reason=SAME_SERIES)
                    del entry["output"]
        for entry in planned:
            for record in entry.get("actions", []):
                name = record.get("name") or record.get("key", "")
                totals.setdefault(name, Counter())[record["action"]] += 1
        files.extend(planned)
    for skipped in found.skipped:
        files.append(
            {"input": job.relative(skipped.path), "status": "skip", "reason": skipped.reason}
        )
    document = {
        "options": job.options.enabled(),
        "codes": [code for code, _ in job.options.cid7050_codes()],
        "attributes": {name: dict(sorted(c.items())) for name, c in sorted(totals.items())},
        "files": sorted(files, key=lambda f: f["input"]),
    }
    target = plan_path(out)
    atomic_write_text(target, json.dumps(document, indent=1) + "\n", mode=0o600)
    return target


def _plan_file(path: Path, kind: str, job: Job) -> dict[str, Any]:
    relative = job.relative(path)
    entry: dict[str, Any] = {"input": relative}
    try:
        if kind == "dicom":
            ds = read_dataset(path, pixels=False)
            reason = needs_quarantine(ds)
            study, series = (
                str(ds.get("StudyInstanceUID", "")),
                str(ds.get("SeriesInstanceUID", "")),
            )
            log = deidentify(ds, job.options, job.key)  # a fresh in-memory copy: safe to change
            patient = str(ds.get("PatientID", "") or "")
            output = dicom_output_path(job.key, patient, study, series, relative)
            entry["actions"] = log.to_list()
            if reason and not job.allow_burned_in:
                entry.update(status="quarantine", reason=reason)
                return entry
        elif kind == "nifti":
            data = path.read_bytes()
            count = strip_nifti(data, relative)[1]
            entry["actions"] = [{"key": "NIfTI header text or extension", "action": "X"}] * count
            suffix = PLAIN_SUFFIXES[kind] + (".gz" if is_gzip(data) else "")
            output = plain_output_path(job.key, relative, suffix)
        else:
            removed = metadata_keys(path.read_bytes())
            entry["actions"] = [{"key": name, "action": "X"} for name in removed]
            output = plain_output_path(job.key, relative, PLAIN_SUFFIXES[kind])
    except UnreadableFileError as exc:
        entry.update(status="skip", reason=exc.reason)
        return entry
    except Exception as exc:  # as in a real run: one bad file is listed, not fatal
        entry.update(status="skip", reason=f"unexpected {type(exc).__name__} ({exc})")
        return entry
    entry.update(status="write", output=output.as_posix())
    return entry


ACTION_WORDS = {
    "X": "removed",
    "Z": "emptied",
    "D": "replaced",
    "U": "UID remapped",
    "K": "kept",
    "C": "cleaned",
}


def plan_lines(path: Path) -> list[str]:
    """A readable summary of a written plan: file outcomes, then each attribute's actions."""
    document = json.loads(path.read_text(encoding="utf-8"))
    outcomes = Counter(f["status"] for f in document["files"])
    lines = [", ".join(f"{n} to {status}" for status, n in sorted(outcomes.items()))]
    width = max((len(name) for name in document["attributes"]), default=0)
    for name, actions in document["attributes"].items():
        words = ", ".join(f"{ACTION_WORDS.get(a, a)} {n}" for a, n in actions.items())
        lines.append(f"  {name:<{width}}  {words}")
    return lines
