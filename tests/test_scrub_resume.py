"""A scrub killed at any moment leaves only complete files and ``--resume`` finishes it with the
same bytes as an uninterrupted run; worker processes and reruns change no byte either."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_scrub_folders import tiny_dicom

from deid.io.atomic import TEMP_PREFIX
from deid.scrub import scrub_release
from deid.scrub.manifest import JOURNAL_NAME

KEY_HEX = "5a" * 32


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "release.key"
    path.write_text(KEY_HEX + "\n")
    path.chmod(0o600)
    return path


def _release(root: Path, files: int) -> Path:
    for i in range(files):
        patient = f"DOE{i % 7}"
        tiny_dicom(root / patient / f"slice{i:04d}.dcm", patient, i)
    (root / "README.txt").write_text("exported by Dr. Who for patient DOE1\n")  # not an image
    return root


def test_workers_and_reruns_give_identical_bytes(tmp_path: Path, key_file: Path) -> None:
    release = _release(tmp_path / "rel", 12)
    serial = scrub_release(release, tmp_path / "serial", key_file=key_file)
    scrub_release(release, tmp_path / "parallel", key_file=key_file, workers=2)
    scrub_release(release, tmp_path / "again", key_file=key_file)
    expected = tree(tmp_path / "serial")
    assert len(expected) == 13  # 12 images + manifest; the text file is listed, not copied
    assert tree(tmp_path / "parallel") == expected
    assert tree(tmp_path / "again") == expected
    assert serial.counts == {"skipped": 1, "written": 12}
    other = tmp_path / "other.key"
    other.write_text("a5" * 32 + "\n")
    other.chmod(0o600)
    scrub_release(release, tmp_path / "otherkey", key_file=other)
    assert set(tree(tmp_path / "otherkey")).isdisjoint(set(expected) - {"manifest.json"})


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path, key_file: Path) -> None:
    total = 120
    release = _release(tmp_path / "rel", total)
    scrub_release(release, tmp_path / "reference", key_file=key_file)
    out = tmp_path / "safe"
    command = [
        sys.executable,
        "-m",
        "deid",
        "scrub",
        str(release),
        "--out",
        str(out),
        "--key-file",
        str(key_file),
        "--quiet",
        "--no-pixels",
        "--no-score",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(command, env=env)
    journal = out / JOURNAL_NAME
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists():
            done = journal.read_bytes().count(b"\n") - 1  # minus the header line
            if done >= 10:
                break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert 10 <= done < total
    # Every file under a final name is complete: byte-identical to the reference's.
    reference = tree(tmp_path / "reference")
    partial = tree(out)
    finals = {p: h for p, h in partial.items() if not Path(p).name.startswith(TEMP_PREFIX)}
    assert "manifest.json" not in finals
    for path, digest in finals.items():
        if path != JOURNAL_NAME:
            assert reference[path] == digest, path
    summary = scrub_release(release, out, key_file=key_file, resume=True)
    assert summary.already_done >= done
    assert tree(out) == reference
