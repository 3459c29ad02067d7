"""The scrub report: a tiny phantom release (2 patients x 2 visits, 2 datasets, one burned-in
radiograph, one junk file with a ``<script>`` name, a ``<script>`` PatientName) is scrubbed and
scored before and after with the tiny ``test``-preset checkpoint."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from test_score import make_checkpoint
from test_synth_fixtures import phantom

from deid.cli import main
from deid.errors import InputError, OutputError
from deid.report.render import ReportPaths
from deid.report.scrub_compare import compare_scores
from deid.report.scrub_render import write_scrub_report
from deid.score import ScoreOptions
from deid.scrub import ScrubSummary, frontier, scrub_release
from deid.scrub.pixel_settings import settings_for
from deid.scrub.report import report_scrub, scrub_side_files
from deid.synth import phi_for, write_release

SCRIPT = "<script>alert(1)"
DATASETS = ("cxr_site_a", "fundus")
SEED = 5


@dataclass
class Scrubbed:
    root: Path
    release: Path
    summary: ScrubSummary
    checkpoint: Path
    paths: ReportPaths
    phi: list[str]  # identifying strings of the release


def _phi_strings(images: list) -> list[str]:
    found = []
    for image in images:
        patient = phi_for(image, SEED).patient
        found += [patient.name.family, patient.name.given, patient.name.dicom, patient.patient_id]
        found += [patient.birth_date.strftime("%Y%m%d"), patient.phone]
    return sorted({s for s in found if len(s) >= 4})


@pytest.fixture(scope="module")
def scrubbed(tmp_path_factory: pytest.TempPathFactory) -> Scrubbed:
    root = tmp_path_factory.mktemp("scrub-report")
    images = [
        phantom(name, patient, visit, burn=(name == "cxr_site_a" and patient == visit == 1))
        for name in DATASETS
        for patient in range(2)
        for visit in range(2)
    ]
    release = root / "release"
    write_release(release, images, "dicom", SEED, progress=False)
    (release / f"{SCRIPT}.txt").write_text("not an image", encoding="utf-8")
    first = sorted(release.rglob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    ds.PatientName = SCRIPT  # removed by the scrub; must never reach the report
    ds.save_as(first)
    checkpoint = make_checkpoint(root / "ckpt")
    summary = scrub_release(release, root / "safe")
    options = ScoreOptions(checkpoint=checkpoint, n_boot=20, cache_dir=root / "cache")
    paths = report_scrub(summary, release, command="deid scrub release --out safe", options=options)
    return Scrubbed(root, release, summary, checkpoint, paths, _phi_strings(images))


def _rows(report: dict) -> dict[str, dict]:
    return {row["label"]: row for row in report["score"]["comparison"]["rows"]}


def test_report_sits_beside_the_safe_copy_and_compares_both_scores(scrubbed: Scrubbed) -> None:
    assert scrubbed.paths.html == scrubbed.root / "safe-report" / "report.html"
    assert not any(p.name.startswith("report") for p in (scrubbed.root / "safe").rglob("*"))
    report = json.loads(scrubbed.paths.json.read_text(encoding="utf-8"))
    rows = _rows(report)
    direct = rows["Files with direct identifiers (name, ID, birth date)"]
    assert direct["input"] == 8 and direct["output"] == 0 and direct["change"] == "safer"
    ps315 = rows["PS3.15 attributes present with a value"]
    assert 0 <= ps315["output"] < ps315["input"]
    # 8 images, the burned-in radiograph quarantined: 7 records in the safe copy
    assert rows["Records scored"]["input"] == 8 and rows["Records scored"]["output"] == 7
    # the junk file is unreadable in the input; the safe copy's manifest.json is not counted
    assert rows["Unreadable files"]["input"] == 1 and rows["Unreadable files"]["output"] == 0
    assert rows["Rank-1 (all groups)"]["output"] is not None
    comparison = report["score"]["comparison"]
    assert comparison["pixels_measured"] and comparison["verdicts"]["output"]["level"] in (
        "red",
        "amber",
        "green",
    )
    for side, folder in (("input", "input-score"), ("output", "safe-score")):
        assert report["score"]["reports"][side] == f"{folder}/report.html"
        assert (scrubbed.paths.html.parent / folder / "report.html").is_file()
    safe_score = json.loads((scrubbed.root / "safe-report/safe-score/report.json").read_text())
    assert not any("manifest" in s["path"] for s in safe_score["skipped"])


def test_report_lists_actions_options_problems_and_limitations(scrubbed: Scrubbed) -> None:
    report = json.loads(scrubbed.paths.json.read_text(encoding="utf-8"))
    actions = {(a["kind"], a["action"]): a for a in report["actions"]}
    assert actions["dicom", "X"]["files"] == scrubbed.summary.counts["written"] == 7
    assert sum(a["count"] for a in report["actions"]) == sum(
        sum(e.actions.values()) for e in scrubbed.summary.entries if e.status == "written"
    )
    assert report["run"]["counts"] == {"quarantined": 1, "skipped": 1, "written": 7}
    assert report["run"]["cid7050_codes"] == list(scrubbed.summary.header.codes)
    statuses = sorted(p["status"] for p in report["problems"])
    assert statuses == ["quarantined", "skipped"]
    assert any("[masked]" in p["path"] for p in report["problems"])
    assert report["pixels"]["status_counts"] == {"unchanged": 7}
    assert report["limitations"][0].startswith("Pixels were not perturbed")
    assert any("Adaptive attackers" in note for note in report["limitations"])


def test_html_has_sections_escapes_file_strings_and_names_nobody(scrubbed: Scrubbed) -> None:
    html = scrubbed.paths.html.read_text(encoding="utf-8")
    for section in ("verdict", "compare", "actions", "options", "pixels", "problems"):
        assert f'id="{section}"' in html
    assert 'id="limitations"' in html and 'id="reproduce"' in html
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1).txt" in html  # the junk file's name, escaped
    assert html.count("&lt;script&gt;") == 1  # the PatientName never appears
    assert html.count("data:image/png;base64,") == 1
    assert "http://" not in html and "https://" not in html
    text = html + scrubbed.paths.json.read_text(encoding="utf-8")
    leaked = [s for s in scrubbed.phi if s in text]
    assert not leaked, leaked


def test_without_a_checkpoint_the_report_keeps_the_metadata_and_says_why(
    scrubbed: Scrubbed, tmp_path: Path
) -> None:
    options = ScoreOptions(checkpoint=tmp_path / "missing", cache_dir=tmp_path / "cache")
    paths = report_scrub(
        scrubbed.summary, scrubbed.release, command="c", report_dir=tmp_path / "r", options=options
    )
    report = json.loads(paths.json.read_text(encoding="utf-8"))
    assert not report["score"]["comparison"]["pixels_measured"]
    assert "checkpoint" in report["score"]["note"] and "missing" in report["score"]["note"]
    rows = _rows(report)
    assert "Records at risk" not in rows
    assert rows["Files with private tags"]["input"] > rows["Files with private tags"]["output"] == 0
    assert rows["Unreadable files"]["output"] == 0  # manifest.json excluded here as well
    html = paths.html.read_text(encoding="utf-8")
    assert "Pixel-level linkage was not measured" in html
    assert html.count("data:image/png;base64,") == 0


def test_report_refuses_a_folder_inside_the_safe_copy(scrubbed: Scrubbed) -> None:
    with pytest.raises(OutputError, match="inside the safe copy"):
        report_scrub(
            scrubbed.summary,
            scrubbed.release,
            command="c",
            report_dir=scrubbed.summary.out / "r",
            score=False,
        )
    with pytest.raises(OutputError, match="--report-dir"):
        write_scrub_report(
            scrubbed.summary,
            scrubbed.summary.out,
            input_score=None,
            output_score=None,
            command="c",
        )


def test_pixel_metrics_are_summarised_and_change_the_limitations(
    scrubbed: Scrubbed, tmp_path: Path
) -> None:
    entries = tuple(
        dataclasses.replace(e, pixels="cleaned", pixel_metrics={"ssim": 0.9 + i / 100, "psnr": x})
        if e.status == "written"
        else e
        for i, (e, x) in enumerate(
            zip(scrubbed.summary.entries, [float("inf")] + [30.0] * 20, strict=False)
        )
    )
    summary = dataclasses.replace(scrubbed.summary, entries=entries)
    paths = write_scrub_report(summary, tmp_path, input_score=None, output_score=None, command="c")
    report = json.loads(paths.json.read_text(encoding="utf-8"))
    ssim = [e.pixel_metrics["ssim"] for e in entries if e.pixel_metrics]
    metric = report["pixels"]["metrics"]["ssim"]
    assert metric["files"] == len(ssim) == 7
    assert metric["mean"] == pytest.approx(sum(ssim) / len(ssim))
    assert (metric["min"], metric["max"]) == (min(ssim), max(ssim))
    assert report["pixels"]["metrics"]["psnr"]["max"] == 30.0  # infinity left out
    assert not report["limitations"][0].startswith("Pixels were not perturbed")
    assert "do not rely on the pixel scrub alone for volumes" in report["limitations"][0]
    assert not report["score"]["scored"]


def test_pixel_settings_quote_the_frontier_measurement(
    scrubbed: Scrubbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for("medium").to_dict()
    source = {"command": "c", "machine": "m", "date": "2026-11-30 09:00 UTC"}
    source |= {"data": "phantom:x", "split": "test", "reid": ["r"], "attacker": "a"}
    row = {"strength": "medium", "settings": settings, "images": 10, "rank1_chance": 0.05}
    row |= {"attacker": {"rank1": 0.1, "auc": 0.61}, "adaptive": {"rank1": 0.2, "auc": 0.73}}
    measured = tmp_path / "measured.json"
    measured.write_text(
        json.dumps({"source": source, "rows": [{**row, "diagnosis_auc_drop": 0.004}]})
    )
    monkeypatch.setattr(frontier, "MEASURED_PATH", measured)

    def report_for(pixel_settings: dict, folder: str) -> dict:
        header = dataclasses.replace(scrubbed.summary.header, pixel_settings=pixel_settings)
        summary = dataclasses.replace(scrubbed.summary, header=header)
        paths = write_scrub_report(
            summary, tmp_path / folder, input_score=None, output_score=None, command="c"
        )
        return json.loads(paths.json.read_text(encoding="utf-8"))

    report = report_for({"strength": "medium", "seed": 3, **settings}, "measured")
    note = next(n for n in report["limitations"] if n.startswith("Measured for these pixel"))
    assert "AUC 0.73" in note and "rank-1 0.10 (chance 0.05)" in note and "0.004" in note
    assert report["pixels"]["measured"]["adaptive"]["auc"] == 0.73
    assert report["pixels"]["settings"]["seed"] == 3
    html = (tmp_path / "measured" / "report.html").read_text(encoding="utf-8")
    assert "strength medium: ε 0.03 (L∞, [0, 1] scale), 20 steps" in html

    other = {"strength": "custom", "seed": 0, **settings_for("medium", steps=3).to_dict()}
    report = report_for(other, "unmeasured")
    assert report["pixels"]["measured"] is None
    assert any("were not measured against an adaptive attacker" in n for n in report["limitations"])

    measured.write_text("{}")
    with pytest.raises(InputError, match="not a frontier summary"):
        frontier.measured_for(settings)


def test_compare_judges_only_rows_where_lower_is_safer() -> None:
    before = {
        "linkage": {"n_records": 4, "n_at_risk": 4, "share_at_risk": 1.0, "threshold": 0.5},
        "metadata": {"action_counts": {"X": 5, "D": 2}, "private_tags_files": 2},
    }
    after = {
        "linkage": {"n_records": 4, "n_at_risk": 2, "share_at_risk": 0.5, "threshold": 0.5},
        "metadata": {"action_counts": {"X": 1}, "private_tags_files": 3},
        "truth": {"groups": {"all": {"rank1": 0.5, "mAP": 0.7066666666666667}}},
    }
    before["truth"] = {"groups": {"all": {"rank1": 0.75, "mAP": 0.7066666666666668}}}
    rows = {r["label"]: r for r in compare_scores(before, after)["rows"]}
    assert rows["Share of records at risk"]["change"] == "safer"
    assert rows["Records scored"]["change"] == "n/a"
    assert rows["PS3.15 attributes present with a value"]["input"] == 7
    assert rows["Files with private tags"]["change"] == "riskier"
    assert rows["Rank-1 (all groups)"]["change"] == "safer"
    assert rows["mAP (all groups)"]["change"] == "same"  # differs by float noise only
    assert compare_scores(None, {"metadata": {}})["rows"] == []  # nothing measured on either side


def test_side_file_filter_matches_only_the_scrub_files(tmp_path: Path) -> None:
    is_side = scrub_side_files(tmp_path / "safe")
    assert is_side(tmp_path / "safe" / "manifest.json")
    assert is_side(tmp_path / "safe" / ".deid-work" / "x.dcm")
    assert not is_side(tmp_path / "safe" / "P1" / "manifest.json")
    assert not is_side(tmp_path / "other" / "manifest.json")


def test_cli_writes_the_report_and_honours_no_score(scrubbed: Scrubbed, tmp_path: Path) -> None:
    args = [
        "scrub",
        str(scrubbed.release),
        "--out",
        str(tmp_path / "s"),
        "--no-score",
        "--no-pixels",
    ]
    result = CliRunner().invoke(main, [*args, "--report-dir", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert f"report: {tmp_path / 'rep' / 'report.html'}" in result.output
    report = json.loads((tmp_path / "rep" / "report.json").read_text(encoding="utf-8"))
    assert not report["score"]["scored"] and "--no-score" in report["score"]["note"]
    assert f"--report-dir {tmp_path / 'rep'}" in report["command"]
    assert "--no-score" in report["command"]
    inside = CliRunner().invoke(
        main, [*args[:3], str(tmp_path / "t"), "--report-dir", str(tmp_path / "t" / "r")]
    )
    assert inside.exit_code == 2 and "inside the safe copy" in inside.output
    assert not (tmp_path / "t").exists()  # refused before anything was written


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(scrubbed: Scrubbed, tmp_path: Path) -> None:
    shot = tmp_path / "scrub-report.png"
    proc = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            "--window-size=1200,3400",
            scrubbed.paths.html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert shot.exists() and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    console = re.findall(r".*(?:Uncaught|CONSOLE|Refused to|net::ERR).*", proc.stderr)
    assert not console, console
