"""Locations, flags and side files of ``deid scrub``: what may be written where."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from deid.cli import main
from deid.dicom.options import ProfileOptions
from deid.errors import InputError, OutputError
from deid.scrub import scrub_release

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def tiny_dicom(
    path: Path,
    patient: str,
    index: int,
    *,
    burned: bool = False,
    series: str | None = None,
) -> None:
    """Write a small CT file with PHI in the usual places and a unique Pixel Data."""
    ds = pydicom.Dataset()
    ds.SOPClassUID = CT_STORAGE
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[patient, str(index), "sop"])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[patient, "study"])
    ds.SeriesInstanceUID = series or generate_uid(entropy_srcs=[patient, str(index), "series"])
    ds.PatientName = f"{patient}^Testperson"
    ds.PatientID = f"MRN{patient}"
    ds.PatientBirthDate = "19601231"
    ds.AccessionNumber = f"ACC{patient}{index:04d}"
    ds.InstitutionName = "Saint Testhospital"
    ds.StudyDate = "20200102"
    ds.Modality = "CT"
    ds.InstanceNumber = index + 1
    ds.BurnedInAnnotation = "YES" if burned else "NO"
    ds.Rows, ds.Columns = 4, 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(16, dtype=np.uint16) + index).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CT_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def tiny_release(root: Path, patients: int = 2, files: int = 2) -> Path:
    for p in range(patients):
        for i in range(files):
            tiny_dicom(root / f"Patient{p}" / f"img{i}.dcm", f"SMITH{p}", i)
    return root


def test_out_may_not_overlap_the_release(tmp_path: Path) -> None:
    release = tiny_release(tmp_path / "rel", 1, 1)
    for out in (release, release / "safe"):
        with pytest.raises(InputError, match="inside it"):
            scrub_release(release, out)
    with pytest.raises(InputError, match="is inside --out"):
        scrub_release(release, tmp_path)


def test_non_empty_out_needs_resume_or_overwrite(tmp_path: Path) -> None:
    release = tiny_release(tmp_path / "rel", 1, 1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="--resume"):
        scrub_release(release, foreign)
    with pytest.raises(OutputError, match="did not write"):
        scrub_release(release, foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"  # never emptied
    assert not (tmp_path / "foreign.key").exists()  # refused before any key was made
    out = tmp_path / "safe"
    scrub_release(release, out)
    with pytest.raises(OutputError, match="not empty"):
        scrub_release(release, out)
    (out / "stale.dcm").write_bytes(b"old")
    summary = scrub_release(release, out, overwrite=True)
    assert not (out / "stale.dcm").exists()
    assert summary.counts == {"written": 1}
    with pytest.raises(InputError, match="exclude each other"):
        scrub_release(release, out, resume=True, overwrite=True)


def test_key_beside_output_owner_only_and_resume_needs_same_key(tmp_path: Path) -> None:
    release = tiny_release(tmp_path / "rel", 1, 2)
    out = tmp_path / "safe"
    summary = scrub_release(release, out)
    assert summary.key_created and summary.key_file == tmp_path / "safe.key"
    assert stat.S_IMODE(summary.key_file.stat().st_mode) == 0o600
    assert not any(p.suffix == ".key" for p in out.rglob("*"))
    again = scrub_release(release, out, resume=True)  # reuses safe.key
    assert not again.key_created and again.already_done == 2
    (release / "Patient0" / "img1.dcm").unlink()  # an input gone since: its output goes too
    fewer = scrub_release(release, out, resume=True)
    assert fewer.counts == {"written": 1}
    assert len(list(out.rglob("*.dcm"))) == 1
    assert all(any(d.iterdir()) for d in out.rglob("*") if d.is_dir())  # no empty folders
    other = tmp_path / "other.key"
    other.write_text("ab" * 32 + "\n")
    other.chmod(0o600)
    with pytest.raises(OutputError, match="key_fingerprint"):
        scrub_release(release, out, resume=True, key_file=other)
    with pytest.raises(OutputError, match="options"):
        scrub_release(release, out, resume=True, options=ProfileOptions(retain_uids=True))


def test_map_only_on_request_and_owner_only(tmp_path: Path) -> None:
    release = tiny_release(tmp_path / "rel", 2, 1)
    scrub_release(release, tmp_path / "a")
    assert not (tmp_path / "a.map.json").exists()
    summary = scrub_release(release, tmp_path / "b", write_pseudonym_map=True)
    assert summary.map == tmp_path / "b.map.json"
    assert stat.S_IMODE(summary.map.stat().st_mode) == 0o600
    mapping = json.loads(summary.map.read_text())
    assert set(mapping["patients"]) == {"MRNSMITH0", "MRNSMITH1"}
    for relative, entry in mapping["files"].items():
        scrubbed = pydicom.dcmread(tmp_path / "b" / entry["output"])
        original = pydicom.dcmread(release / relative)
        assert mapping["patients"][original.PatientID] == scrubbed.PatientID
        assert entry["output"].startswith(scrubbed.PatientID + "/")


def test_dry_run_writes_only_the_plan(tmp_path: Path) -> None:
    release = tiny_release(tmp_path / "rel", 1, 1)
    tiny_dicom(release / "burned.dcm", "JONES", 0, burned=True)
    out = tmp_path / "safe"
    summary = scrub_release(release, out, dry_run=True)
    assert not out.exists() and summary.manifest is None
    assert summary.plan == tmp_path / "safe.plan.json"
    assert stat.S_IMODE(summary.plan.stat().st_mode) == 0o600
    plan = json.loads(summary.plan.read_text())
    status = {f["input"]: f["status"] for f in plan["files"]}
    assert status == {"Patient0/img0.dcm": "write", "burned.dcm": "quarantine"}
    assert plan["attributes"]["Patient's Name"] == {"D": 2}
    assert plan["attributes"]["Accession Number"] in ({"Z": 2}, {"X": 2}, {"D": 2})
    assert "SMITH0" not in json.dumps(plan["attributes"])


def test_cli_reports_key_summary_and_errors(tmp_path: Path) -> None:
    release = tiny_release(tmp_path / "rel", 1, 2)
    tiny_dicom(release / "burned.dcm", "JONES", 0, burned=True)
    runner = CliRunner()
    quick = ["--no-pixels", "--no-score"]  # this test is about the copy, not pixels or scores
    result = runner.invoke(
        main, ["scrub", str(release), "--out", str(tmp_path / "s"), "--quiet", *quick]
    )
    assert result.exit_code == 0, result.output
    assert "keep it secret" in result.output and "s.key" in result.output
    result = runner.invoke(main, ["scrub", str(release), "--out", str(tmp_path / "t"), *quick])
    assert result.exit_code == 0, result.output
    assert "1 quarantined, 2 written" in result.output
    pixels = {pydicom.dcmread(p).PixelData for p in (tmp_path / "t").rglob("*.dcm")}
    assert pixels == {pydicom.dcmread(p).PixelData for p in (release / "Patient0").iterdir()}
    assert "quarantined: burned.dcm: Burned In Annotation is YES" in result.output
    result = runner.invoke(main, ["scrub", str(release), "--out", str(tmp_path / "t")])
    assert result.exit_code != 0 and "--resume" in result.output
    bad = runner.invoke(
        main, ["scrub", str(release), "--out", str(tmp_path / "u"), "--profile-options", "nope"]
    )
    assert bad.exit_code == 2 and "unknown profile option" in bad.output
    dry = runner.invoke(main, ["scrub", str(release), "--out", str(tmp_path / "d"), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "1 to quarantine, 2 to write" in dry.output
    assert any(
        line.split() == ["Patient's", "Name", "replaced", "3"] for line in dry.output.splitlines()
    )
    assert not (tmp_path / "d").exists()
    inside = runner.invoke(main, ["scrub", str(release), "--out", str(release / "x")])
    assert inside.exit_code != 0 and "inside" in inside.output


def test_cli_safe_private_list_keeps_only_listed_private_attributes(tmp_path: Path) -> None:
    release = tmp_path / "rel"
    tiny_dicom(release / "a.dcm", "LEE", 0)
    ds = pydicom.dcmread(release / "a.dcm")
    block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    block.add_new(0x27, "SH", "SCANSPEED")
    block.add_new(0x28, "LO", "operator LEE")
    ds.save_as(release / "a.dcm")
    args = [
        "scrub",
        str(release),
        "--out",
        str(tmp_path / "s"),
        "--quiet",
        "--no-pixels",
        "--no-score",
        "--profile-options",
        "retain-safe-private",
        "--safe-private",
        "GEMS_PARM_01:0043:27",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (output,) = (tmp_path / "s").rglob("*.dcm")
    private = {e.value for e in pydicom.dcmread(output) if e.tag.is_private}
    assert "SCANSPEED" in private and "operator LEE" not in private
    bad = CliRunner().invoke(main, [*args[:6], "--safe-private", "GEMS:43"])
    assert bad.exit_code == 2 and "CREATOR:GGGG:EE" in bad.output


def test_a_series_with_one_burned_in_slice_is_held_back_whole(tmp_path: Path) -> None:
    release = tmp_path / "rel"
    for i in range(3):
        tiny_dicom(release / f"s{i}.dcm", "KIM", i, burned=(i == 1), series="1.2.3.9")
    plan = scrub_release(release, tmp_path / "p", dry_run=True).plan
    assert plan is not None
    planned = {f["input"]: f for f in json.loads(plan.read_text())["files"]}
    assert {f["status"] for f in planned.values()} == {"quarantine"}
    assert planned["s0.dcm"]["reason"] == "another file of its series may carry burned-in text"
    summary = scrub_release(release, tmp_path / "out")
    assert summary.counts == {"quarantined": 3}
    assert [p.reason.startswith("Burned In") for p in summary.problems] == [False, True, False]
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_cli_perturbs_pixels_against_the_adversary(tmp_path: Path) -> None:
    from test_score import make_checkpoint

    release = tiny_release(tmp_path / "rel", 2, 1)
    adversary = make_checkpoint(tmp_path / "ckpt")
    args = ["scrub", str(release), "--out", str(tmp_path / "s"), "--quiet", "--no-score"]
    options = ["--adversary", str(adversary), "--steps", "2", "--epsilon", "0.3"]
    tuned = ["--pixel-setting", "momentum=1", "--pixel-setting", "eot_samples=1"]
    result = CliRunner().invoke(main, [*args, *options, *tuned])  # 4x4 ramp: a coarse budget
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    recorded = manifest["header"]["pixel_settings"]
    assert (recorded["strength"], recorded["momentum"], recorded["eot_samples"]) == ("custom", 1, 1)
    assert (recorded["steps"], recorded["epsilon"]) == (2, 0.3)
    written = [f for f in manifest["files"] if f["status"] == "written"]
    assert len(written) == 2 and all("pixel_metrics" in f for f in written)
    before = {pydicom.dcmread(p).PixelData for p in release.rglob("*.dcm")}
    after = {pydicom.dcmread(p).PixelData for p in (tmp_path / "s").rglob("*.dcm")}
    assert before.isdisjoint(after)  # every image was perturbed
    for path in (tmp_path / "s").rglob("*.dcm"):
        assert "113101" in {
            item.CodeValue for item in pydicom.dcmread(path).DeidentificationMethodCodeSequence
        }


def test_cli_names_an_unknown_pixel_setting(tmp_path: Path) -> None:
    release = tiny_release(tmp_path / "rel", 1, 1)
    args = ["scrub", str(release), "--out", str(tmp_path / "s"), "--quiet", "--no-score"]
    result = CliRunner().invoke(main, [*args, "--pixel-setting", "momentun=1"])
    assert result.exit_code == 2 and "Unknown pixel setting 'momentun'" in result.output
    assert not (tmp_path / "s").exists()
