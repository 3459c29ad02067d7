"""The generated PS3.15 Table E.1-1, its lookup, and the profile options."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from deid.dicom.iod_types import resolve
from deid.dicom.options import ProfileOptions
from deid.dicom.profile_row import BASIC_ACTIONS, OPTION_COLUMNS, PRIVATE_PATTERN
from deid.dicom.profile_table import ROWS
from deid.dicom.table import EXACT, PRIVATE_ROW, row_for
from deid.errors import InputError

REPO = Path(__file__).resolve().parent.parent
SHARED_TABLE = REPO.parent / "shared" / "dicom" / "confidentiality_profile_attributes.json"
needs_shared = pytest.mark.skipif(not SHARED_TABLE.is_file(), reason="shared table absent")


def _generator():
    spec = importlib.util.spec_from_file_location(
        "generate_profile_table", REPO / "tools" / "generate_profile_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_table_is_well_formed():
    assert len(ROWS) == 621
    patterns = [r.tag_pattern for r in ROWS]
    assert patterns == sorted(patterns) and len(set(patterns)) == len(patterns)
    fields = set(OPTION_COLUMNS.values())
    for row in ROWS:
        assert row.basic_action in BASIC_ACTIONS, row
        assert set(row.option_actions) <= fields, row
        assert set(row.option_actions.values()) <= {"K", "C"}, row
        assert row.tag_pattern == PRIVATE_PATTERN or len(row.tag_pattern) == 8


def test_lookup_of_exact_repeating_and_private_tags():
    assert row_for(0x00100020).name == "Patient ID"
    assert row_for(0x00100020).basic_action == "Z/D"
    assert row_for(0x60023000).name == "Overlay Data"  # repeating group 60xx
    assert row_for(0x501E0010).name == "Curve Data"
    assert row_for(0x00091001) is PRIVATE_ROW and row_for(0x60010010) is PRIVATE_ROW
    assert row_for(0x00280010) is None  # Rows: not in the table
    assert row_for(0x60020010) is None  # overlay rows: only data and comments are listed


@needs_shared
def test_every_row_of_the_standard_is_covered():
    source = json.loads(SHARED_TABLE.read_text())
    assert len(source) == len(ROWS)
    gen = _generator()
    by_pattern = {r.tag_pattern: r for r in ROWS}
    for raw in source:
        row = by_pattern[gen.tag_pattern(raw["tag"])]
        assert row.basic_action == raw["basicProfile"]
        assert row.name == raw["name"].strip()
        expected = {OPTION_COLUMNS[k]: v for k, v in raw.items() if k in OPTION_COLUMNS and v}
        assert row.option_actions == expected
        if row.is_exact:  # the lookup finds it, whatever the hex case
            assert row_for(int(row.tag_pattern, 16)) is row


@needs_shared
def test_committed_table_matches_the_generator(tmp_path):
    out = tmp_path / "profile_table.py"
    assert _generator().main([str(SHARED_TABLE), "--output", str(out)]) == 0
    committed = (REPO / "deid" / "dicom" / "profile_table.py").read_text()
    assert out.read_text() == committed


def test_generator_rejects_bad_rows():
    gen = _generator()
    with pytest.raises(ValueError, match="unknown basic action"):
        gen.convert_row({"tag": "(0010,0010)", "name": "n", "basicProfile": "Q", "stdCompIOD": "Y"})
    with pytest.raises(ValueError, match="unrecognised tag"):
        gen.tag_pattern("(0010;0010)")


def test_options_from_names_and_codes():
    opts = ProfileOptions.from_names(["retain-uids", "clean_descriptors"])
    assert opts.retain_uids and opts.clean_descriptors and not opts.retain_device_id
    codes = [c for c, _ in opts.cid7050_codes()]
    assert codes == ["113100", "113105", "113110"]
    assert [c for c, _ in ProfileOptions(pixels_cleaned=True).cid7050_codes()] == [
        "113100",
        "113101",
    ]
    with pytest.raises(InputError, match="unknown profile option 'retain-everything'"):
        ProfileOptions.from_names(["retain-everything"])
    with pytest.raises(InputError, match="exclude each other"):
        ProfileOptions.from_names(["retain-long-full-dates", "retain-long-modified-dates"])


def test_resolution_by_iod_type():
    ct, op = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.77.1.5.1"
    assert resolve("Z/D", ct, 0x00080023) == "Z"  # Content Date, type 2 in General Image
    assert resolve("Z/D", op, 0x00080023) == "D"  # type 1 in Ophthalmic Photography Image
    assert resolve("X/Z/D", ct, 0x00080080) == "X"  # Institution Name, type 3
    assert resolve("X/Z/D", ct, 0x00181000, multi_frame=True) == "D"  # Enhanced Equipment
    assert resolve("X/Z", "1.2.3.4", 0x00080022) == "X"  # unknown IOD: remove
    assert resolve("Z/D", "1.2.3.4", 0x00700084) == "Z"
    assert resolve("X/D", "1.2.840.10008.5.1.4.1.1.481.5", 0x300A0006) == "D"  # type 2, no Z
    assert EXACT[0x00080023].basic_action == "Z/D"


def test_safe_private_list_file(tmp_path):
    from deid.dicom.options import load_safe_private

    path = tmp_path / "safe.json"
    path.write_text('[{"creator": "GEMS_PARM_01", "group": "0043", "element": "27"}]')
    assert load_safe_private(path) == frozenset({("GEMS_PARM_01", 0x0043, 0x27)})
    path.write_text('[{"creator": "X", "group": "0042", "element": "27"}]')
    with pytest.raises(InputError, match="group must be odd"):
        load_safe_private(path)
    path.write_text('[{"group": "0043"}]')
    with pytest.raises(InputError, match="entry 0 needs creator"):
        load_safe_private(path)
