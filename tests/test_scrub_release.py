"""End to end: scrub a phantom release with PHI (DICOM + PNG, 2 patients x 2 visits, 3 datasets)
and check what reaches the safe copy."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from test_synth_fixtures import phantom

from deid.io import discover
from deid.io.image_read import image_metadata
from deid.scrub import ScrubSummary, scrub_release
from deid.synth import phi_for, write_release
from deid.synth.phi import Person, VisitPHI

SEED = 3
DATASETS = ("cxr_site_a", "chest_ct", "fundus")


@dataclass
class Scrubbed:
    release: Path
    out: Path
    summary: ScrubSummary
    mapping: dict[str, dict[str, dict[str, str]]]
    phi: list[VisitPHI]
    inputs_before: dict[str, str]


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def scrubbed(tmp_path_factory: pytest.TempPathFactory) -> Scrubbed:
    root = tmp_path_factory.mktemp("scrub")
    images = [
        # one radiograph with text burned in (and BurnedInAnnotation YES) to be quarantined
        phantom(name, patient, visit, burn=(name == "cxr_site_a" and patient == visit == 1))
        for name in DATASETS
        for patient in range(2)
        for visit in range(2)
    ]
    release = root / "release"
    write_release(release, images, "both", SEED, progress=False)
    before = _hashes(release)
    out = root / "safe"
    summary = scrub_release(release, out, write_pseudonym_map=True)
    mapping = json.loads(summary.map.read_text()) if summary.map else {}
    return Scrubbed(release, out, summary, mapping, [phi_for(i, SEED) for i in images], before)


def _names(person: Person) -> list[str]:
    return [person.family, person.given, person.file_token, person.dicom]


def _phi_strings(phi: list[VisitPHI]) -> set[str]:
    """Identifying strings of the release, each long enough not to occur by chance."""
    found: set[str] = set()
    for visit in phi:
        patient, site = visit.patient, visit.site
        found.update(_names(patient.name) + _names(patient.referring_physician))
        for person in (
            visit.performing_physician,
            visit.reading_physician,
            visit.operator,
            *site.staff,
        ):
            found.update(_names(person))
        found.update(
            [
                patient.patient_id,
                patient.address,
                patient.phone,
                visit.accession,
                patient.birth_date.strftime("%Y%m%d"),
                patient.birth_date.isoformat(),
                visit.study_datetime.strftime("%Y%m%d"),
                visit.study_datetime.strftime("%Y-%m-%d"),
                site.institution,
                site.address,
                site.department,
                site.station_name,
                site.device_serial,
            ]
        )
    return {s for s in found if len(s) >= 5}


def test_no_phi_in_any_output_byte_or_path(scrubbed: Scrubbed) -> None:
    phi = _phi_strings(scrubbed.phi)
    assert len(phi) > 40
    # the input does carry them (else this test would prove nothing)
    inputs = b"".join(p.read_bytes() for p in scrubbed.release.rglob("*.dcm"))
    assert sum(s.encode("utf-8") in inputs for s in phi) > 20
    files = [p for p in scrubbed.out.rglob("*") if p.is_file()]
    assert len(files) == len(scrubbed.inputs_before)  # every written file + manifest
    for path in files:
        data = path.read_bytes()
        relative = path.relative_to(scrubbed.out).as_posix().upper()
        for secret in phi:
            encoded = {secret.encode("utf-8"), secret.upper().encode("utf-8")}
            for codec in ("latin-1", "utf-16-le"):
                with contextlib.suppress(UnicodeEncodeError):
                    encoded.add(secret.encode(codec))
            assert not any(e in data for e in encoded), (secret, path)
            assert secret.upper() not in relative, (secret, relative)


def test_inputs_untouched_and_side_files_outside(scrubbed: Scrubbed) -> None:
    assert _hashes(scrubbed.release) == scrubbed.inputs_before
    parent = scrubbed.out.parent
    assert sorted(p.name for p in parent.iterdir() if p.name.startswith("safe")) == [
        "safe",
        "safe.key",
        "safe.map.json",
    ]
    for entry in json.loads((scrubbed.out / "manifest.json").read_text())["files"]:
        assert entry["input_sha256"] in scrubbed.inputs_before.values()
        if entry["status"] == "written":
            data = (scrubbed.out / entry["output"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["output_sha256"]


def _pairs(scrubbed: Scrubbed, prefix: str) -> list[tuple[Path, Path]]:
    return [
        (scrubbed.release / relative, scrubbed.out / entry["output"])
        for relative, entry in scrubbed.mapping["files"].items()
        if relative.startswith(prefix) and entry["status"] == "written"
    ]


def test_pixel_data_bit_identical_and_marks_set(scrubbed: Scrubbed) -> None:
    pairs = _pairs(scrubbed, "dicom/")
    assert len(pairs) > 10
    for source, output in pairs:
        before, after = pydicom.dcmread(source), pydicom.dcmread(output)
        assert after.PixelData == before.PixelData
        assert after.PatientIdentityRemoved == "YES"
        codes = [item.CodeValue for item in after.DeidentificationMethodCodeSequence]
        assert "113100" in codes and "113101" not in codes
        assert after.PatientID != before.PatientID and after.PatientID.startswith("P")
        assert not [e for e in after if e.tag.is_private]
        assert after.preamble == b"\x00" * 128


def test_png_metadata_gone_pixels_identical(scrubbed: Scrubbed) -> None:
    pairs = _pairs(scrubbed, "png/")
    assert len(pairs) > 10
    for source, output in pairs:
        with Image.open(source) as before, Image.open(output) as after:
            assert image_metadata(before)  # the phantom PNGs carry text chunks
            assert image_metadata(after) == {}
            np.testing.assert_array_equal(np.asarray(after), np.asarray(before))


def test_uids_remapped_consistently_and_series_still_group(scrubbed: Scrubbed) -> None:
    remap: dict[str, str] = {}
    for source, output in _pairs(scrubbed, "dicom/"):
        before, after = pydicom.dcmread(source), pydicom.dcmread(output)
        for keyword in (
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "SOPInstanceUID",
            "FrameOfReferenceUID",
        ):
            if keyword in before:
                old, new = str(before[keyword].value), str(after[keyword].value)
                assert old != new and new.startswith("2.25.")
                assert remap.setdefault(old, new) == new  # same UID -> same new UID
        assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    assert len(set(remap.values())) == len(remap)  # no two UIDs merged
    sizes_in = sorted(len(i.paths) for i in discover(scrubbed.release).items)
    sizes_out = sorted(len(i.paths) for i in discover(scrubbed.out).items)
    quarantined = scrubbed.summary.counts.get("quarantined", 0)
    assert max(sizes_in) > 1  # CT volumes are series of several files
    assert len(sizes_out) == len(sizes_in) - quarantined  # the quarantined file is single
    volumes_in = sorted(s for s in sizes_in if s > 1)
    assert sorted(s for s in sizes_out if s > 1) == volumes_in


def test_burned_in_file_quarantined_unless_allowed(scrubbed: Scrubbed, tmp_path: Path) -> None:
    assert scrubbed.summary.counts == {"quarantined": 1, "written": len(scrubbed.inputs_before) - 1}
    (problem,) = scrubbed.summary.problems
    assert problem.status == "quarantined" and "Burned In Annotation" in problem.reason
    assert scrubbed.mapping["files"][problem.input]["output"] == ""
    single = tmp_path / "one"
    single.mkdir()
    shutil.copy(scrubbed.release / problem.input, single / "burned.dcm")
    summary = scrub_release(single, tmp_path / "out", allow_burned_in=True)
    assert summary.counts == {"written": 1}


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
def test_dciodvfy_reports_no_new_error(scrubbed: Scrubbed) -> None:
    def errors(path: Path) -> set[str]:
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        return {line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")}

    checked: set[str] = set()
    for source, output in _pairs(scrubbed, "dicom/"):
        modality = str(pydicom.dcmread(source, stop_before_pixels=True).Modality)
        if modality in checked:
            continue
        checked.add(modality)
        assert errors(output) <= errors(source), (modality, errors(output) - errors(source))
    assert checked == {"CR", "CT", "OP"}
