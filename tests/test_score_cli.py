"""``deid score`` end to end through the CLI: report files, exit codes, escaping, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from test_score import N_PATIENTS, N_VISITS, make_checkpoint, write_release

from deid.cli.score import score

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "test-ckpt")


def _dicom(path: Path, name: str, patient_id: str) -> None:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = name, patient_id, "OT"
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.random.default_rng(1).integers(0, 4096, (32, 32), np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture()
def release(tmp_path: Path) -> Path:
    """PNG phantoms with truth, one DICOM with a script in PatientName, and garbage."""
    write_release(tmp_path / "rel")
    _dicom(tmp_path / "rel" / "scan.dcm", f"Doe^Jane{SCRIPT}", "PID-77731")
    (tmp_path / "rel" / f"{SCRIPT.replace('/', '')}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "rel" / "notes.txt").write_text("not an image", encoding="utf-8")
    return tmp_path / "rel"


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(score, args, catch_exceptions=False)
    return result.exit_code, result.output


def test_score_writes_both_files_beside_the_release(release: Path, checkpoint: Path) -> None:
    truth = release.with_name("rel.truth.csv")
    code, output = _run(
        [
            str(release),
            "--truth",
            str(truth),
            "--checkpoint",
            str(checkpoint),
            "--workers",
            "0",
            "--n-boot",
            "20",
            "--quiet",
            "--cache-dir",
            str(release.parent / "cache"),
        ]
    )
    report = release.with_name("rel-report")
    assert code == 3, output  # the DICOM holds a name and an ID: red
    assert "RED" in output and str(report / "report.html") in output
    results = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert results["scope"]["n_records"] == N_PATIENTS * N_VISITS + 1
    assert results["truth"]["groups"]["toy"]["n_patients"] == N_PATIENTS
    assert results["metadata"]["direct_identifier_files"] >= 1
    assert {s["reason"] for s in results["skipped"]} and len(results["skipped"]) == 2
    html = (report / "report.html").read_text(encoding="utf-8")
    for text in (html, json.dumps(results)):
        assert "PID-77731" not in text and "Doe" not in text  # identifiers never reach the report
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    assert "--checkpoint" in results["command"]
    assert results["thumbnails"] is None and 'id="thumbnails"' not in html  # images are PHI


def test_rescoring_hits_the_cache(release: Path, checkpoint: Path) -> None:
    args = [
        str(release),
        "--checkpoint",
        str(checkpoint),
        "--workers",
        "0",
        "--quiet",
        "--cache-dir",
        str(release.parent / "cache"),
        "--out",
        str(release.parent / "r"),
    ]
    _run(args)
    _run(args)
    results = json.loads((release.parent / "r" / "report.json").read_text(encoding="utf-8"))
    assert results["options"]["cache_hits"] == N_PATIENTS * N_VISITS + 1


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: p.mkdir() or p, "is empty"),
        (lambda p: p.mkdir() or (p / "a.txt").write_text("x") and p, "no readable image"),
    ],
    ids=["missing", "empty", "no-images"],
)
def test_bad_release_folders_say_what_to_do(
    tmp_path: Path, checkpoint: Path, setup, message
) -> None:
    folder = setup(tmp_path / "rel")
    result = CliRunner().invoke(score, [str(folder), "--checkpoint", str(checkpoint), "--quiet"])
    assert result.exit_code != 0 and message in result.output


def test_truth_naming_unknown_files_is_reported(release: Path, checkpoint: Path) -> None:
    truth = release.with_name("rel.truth.csv")
    with truth.open("a", encoding="utf-8") as handle:
        handle.write("missing/ghost.png,p9,toy,0,test,0\n")
    result = CliRunner().invoke(
        score,
        [
            str(release),
            "--truth",
            str(truth),
            "--checkpoint",
            str(checkpoint),
            "--quiet",
            "--no-cache",
        ],
    )
    assert result.exit_code != 0 and "ghost.png" in result.output
    assert "belongs to this release" in result.output


def test_corrupt_checkpoint_is_reported(release: Path, checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((checkpoint / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    result = CliRunner().invoke(score, [str(release), "--checkpoint", str(broken), "--quiet"])
    assert result.exit_code != 0 and "corrupt" in result.output


def test_report_inside_the_release_is_refused(release: Path, checkpoint: Path) -> None:
    result = CliRunner().invoke(
        score,
        [
            str(release),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(release / "report"),
            "--quiet",
        ],
    )
    assert result.exit_code != 0 and "inside the release" in result.output
    assert not (release / "report").exists()


def test_gallery_and_thumbnails(tmp_path: Path, checkpoint: Path) -> None:
    truth = write_release(tmp_path / "rel")
    gallery = tmp_path / "gallery"
    shutil.copytree(tmp_path / "rel", gallery)  # the same images, identified
    shutil.copy(truth, tmp_path / "gallery.truth.csv")
    out = tmp_path / "report"
    code, output = _run(
        [
            str(tmp_path / "rel"),
            "--truth",
            str(truth),
            "--gallery",
            str(gallery),
            "--checkpoint",
            str(checkpoint),
            "--no-cache",
            "--quiet",
            "--n-boot",
            "0",
            "--thumbnails",
            "--out",
            str(out),
            "--threshold",
            "0.99",
            "--fail-above",
            "1",
        ]
    )
    assert code == 0, output  # PNGs without PHI and nothing above the allowed share: not red
    results = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert results["gallery"]["n_gallery"] == N_PATIENTS * N_VISITS
    assert results["gallery"]["top1_correct_share"] == 1.0  # each image finds its own copy
    assert len(results["thumbnails"]) == N_PATIENTS * N_VISITS
    assert 'id="thumbnails"' in (out / "report.html").read_text(encoding="utf-8")
