from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from test_synth_fixtures import phantom

from deid.errors import InputError, OutputError
from deid.synth import phi_for, write_release
from reid_model.phantoms.types import DATASETS


def _cohort(burn_second_visit: bool = True) -> list:
    return [
        phantom(dataset, patient, visit, burn=burn_second_visit and visit == 1, slices=2)
        for dataset in DATASETS
        for patient in range(2)
        for visit in range(2)
    ]


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _truth(out: Path) -> list[dict[str, str]]:
    with open(out.with_name(out.name + ".truth.csv"), newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_dicom_release_layout_and_truth(tmp_path: Path) -> None:
    out = tmp_path / "release"
    images = _cohort()
    summary = write_release(out, images, "dicom", seed=1, progress=False)
    files = _files(out)
    rows = _truth(out)
    assert summary.truth == tmp_path / "release.truth.csv" and not (out / "truth.csv").exists()
    assert not list(tmp_path.rglob(".deid-partial-*"))
    assert summary.n_images == 20 and summary.n_patients == 10
    assert summary.n_files == len(files) == len(rows) == 3 * 2 * 2 + 2 * 2 * 2 * 2
    assert {r["file"] for r in rows} == set(files)
    for row in rows:
        ds = pydicom.dcmread(out / row["file"])
        patient_id, study_folder, name = row["file"].split("/")
        assert ds.PatientID == patient_id and name.endswith(".dcm")
        assert study_folder == f"{ds.StudyDate}_{ds.Modality}_{ds.AccessionNumber}"
        assert ds.Modality == DATASETS[row["dataset"]]
        assert ds.BurnedInAnnotation == ("YES" if row["visit"] == "1" else "NO")
        is_volume = row["dataset"] in ("chest_ct", "brain_mri")
        assert (row["slice"] != "") == is_volume
        if is_volume:
            assert ds.InstanceNumber == int(row["slice"]) + 1
    by_dataset = {r["dataset"]: r for r in rows}
    assert (
        by_dataset["cxr_site_a"]["opacity"] == "1" and by_dataset["cxr_site_a"]["effusion"] == "0"
    )
    assert by_dataset["cxr_site_a"]["nodule"] == "" and by_dataset["fundus"]["opacity"] == ""
    assert {(r["patient"], r["split"]) for r in rows} == {(i.patient, i.split) for i in images}
    assert list(rows[0])[:6] == ["file", "patient", "dataset", "visit", "split", "slice"]


def test_same_seed_gives_byte_identical_release(tmp_path: Path) -> None:
    images = [phantom(d, 0, 1, burn=d != "fundus", slices=2) for d in DATASETS]
    first = write_release(tmp_path / "a", images, "both", seed=3, progress=False)
    second = write_release(tmp_path / "b", images, "both", seed=3, progress=False)
    other = write_release(tmp_path / "c", images, "both", seed=4, progress=False)
    assert _files(first.out) == _files(second.out)
    assert first.truth.read_bytes() == second.truth.read_bytes()
    assert set(_files(other.out)) != set(_files(first.out))


def test_png_release_names_and_chunks_carry_phi(tmp_path: Path) -> None:
    out = tmp_path / "png_release"
    write_release(out, _cohort(), "png", seed=2, progress=False)
    rows = _truth(out)
    for image in _cohort():
        phi = phi_for(image, 2)
        mine = [
            r["file"]
            for r in rows
            if r["patient"] == image.patient and r["visit"] == str(image.visit)
        ]
        day = phi.study_datetime.strftime("%Y-%m-%d")
        assert all(
            phi.patient.name.file_token in f and phi.patient.patient_id in f and day in f
            for f in mine
        )
        with Image.open(out / mine[0]) as png:
            assert png.text["PatientID"] == phi.patient.patient_id
            assert png.text["PatientName"] == phi.patient.name.display
            levels = np.asarray(png)
        if image.dataset == "fundus":
            assert png.mode == "RGB"
            assert (levels != image.pixels).any() == image.burn_in_phi
        elif image.dataset == "chest_ct":
            assert png.text["RescaleIntercept"] == "-1024"
            if not image.burn_in_phi:
                np.testing.assert_array_equal(levels.astype(np.int32) - 1024, image.pixels[0])
        elif not image.burn_in_phi:
            expected = image.pixels[0] if image.is_volume else image.pixels
            np.testing.assert_array_equal(levels, expected.astype(np.uint32) << 4)
    volume_rows = [r for r in rows if r["dataset"] == "brain_mri"]
    assert {r["slice"] for r in volume_rows} == {"0", "1"}
    assert all(r["file"].endswith(f"/slice_00{r['slice']}.png") for r in volume_rows)


def test_both_formats_use_subfolders(tmp_path: Path) -> None:
    out = tmp_path / "both"
    write_release(out, [phantom("fundus"), phantom("chest_ct", slices=2)], "both", 0, False)
    assert sorted(p.name for p in out.iterdir()) == ["dicom", "png"]
    assert sorted(r["file"].split("/")[0] for r in _truth(out)) == ["dicom"] * 3 + ["png"] * 3


def test_refuses_non_empty_folder_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="not empty.*--overwrite"):
        write_release(out, [phantom("fundus")], "dicom", 0, False)
    assert not (tmp_path / "busy.truth.csv").exists()
    write_release(out, [phantom("fundus")], "dicom", 0, False, overwrite=True)
    assert (out / "keep.txt").exists() and len(_truth(out)) == 1
    fresh = tmp_path / "fresh"
    (tmp_path / "fresh.truth.csv").write_text("stale")
    with pytest.raises(OutputError, match="already exists"):
        write_release(fresh, [phantom("fundus")], "dicom", 0, False)


def test_rejects_bad_format_empty_input_and_name_clashes(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown release format 'jpeg'"):
        write_release(tmp_path / "x", [phantom("fundus")], "jpeg", 0, False)
    with pytest.raises(InputError, match="no phantom images"):
        write_release(tmp_path / "y", [], "png", 0, False)
    with pytest.raises(OutputError, match="two images map to"):
        write_release(tmp_path / "z", [phantom("fundus"), phantom("fundus")], "png", 0, False)
