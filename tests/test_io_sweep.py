"""Every file bundled with pydicom and pydicom-data is either decoded or skipped with a reason."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pydicom.data
import pytest

from deid.io import Record, Skipped, iter_records, write_like

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
# Round trips are checked for every DICOM record up to this size; the few big cine files
# would only add minutes of disk I/O on a shared 2-core runner.
ROUND_TRIP_BYTES = 4_000_000


def _roots(files: list[Path]) -> list[Path]:
    """pydicom's test folder, plus the folders of external sources such as pydicom-data."""
    roots = {TEST_FILES}
    roots.update(path.parent for path in files if TEST_FILES not in path.parents)
    return sorted(roots)


@pytest.mark.slow
def test_every_bundled_file_is_read_or_skipped(tmp_path: Path) -> None:
    files = [Path(f) for f in pydicom.data.get_testdata_files() if Path(f).is_file()]
    external = [path for path in files if TEST_FILES not in path.parents]
    assert len(files) > 150
    covered: set[Path] = set()
    records = round_trips = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns loudly about its deliberately odd files
        for root in _roots(files):
            for result in iter_records(root):
                if isinstance(result, Skipped):
                    assert result.reason.strip(), result.path
                    covered.add(result.path)
                    continue
                records += 1
                covered.update(result.paths)
                assert result.pixels.dtype == np.float32, result.key
                assert np.isfinite(result.pixels).all(), result.key
                json.dumps(result.metadata)  # metadata must be JSON-able as it comes
                shown = result.display()
                assert shown.min() >= 0.0 and shown.max() <= 1.0, result.key
                small = result.pixels.nbytes <= ROUND_TRIP_BYTES
                if result.kind == "dicom" and small:
                    round_trips += 1
                    out = [tmp_path / root.name / f"{i}.dcm" for i in range(len(result.paths))]
                    write_like(result, result.pixels, out)
                    again = next(r for r in iter_records(out[0].parent) if isinstance(r, Record))
                    np.testing.assert_array_equal(again.pixels, result.pixels, err_msg=result.key)
                    for path in out:
                        path.unlink()
    missing = [path for path in files if path not in covered]
    assert missing == []
    # pydicom alone decodes > 80 of its files; pydicom-data adds > 60 more.
    assert records > (140 if external else 80)
    assert round_trips > 0.8 * records
