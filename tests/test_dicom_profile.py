"""De-identification of a crafted corpus in which every settable attribute of PS3.15 Table E.1-1
holds a unique value (top level, inside sequences, private tags, curve, overlay)."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import io

import pydicom
import pytest

from deid.dicom.crafted import crafted_dataset
from deid.dicom.dates import shift_date, shift_datetime, shift_days
from deid.dicom.options import OPTION_CODES, ProfileOptions
from deid.dicom.profile import deidentify, needs_quarantine, plan
from deid.dicom.pseudonyms import pseudonym_id
from deid.dicom.uids import remap_uid

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def write(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def scrubbed(options: ProfileOptions, key: bytes = KEY, **kwargs) -> tuple[bytes, list, object]:
    ds, planted = crafted_dataset(**kwargs)
    log = deidentify(ds, options, key)
    return write(ds), planted, log


def _kept(planted, options: ProfileOptions) -> bool:
    """Whether the options keep this planted value: an enabled K, or a time of day under the
    modified-dates option (a whole-day shift leaves times as they are)."""
    actions = {a for name, a in planted.row.option_actions.items() if getattr(options, name)}
    is_time = planted.vr == "TM"
    return "K" in actions or (options.retain_long_modified_dates and "C" in actions and is_time)


def test_crafted_corpus_plants_searchable_values():
    original, planted = crafted_dataset()
    before = write(original)
    assert len(planted) > 600
    assert all(p.token.encode() in before for p in planted)


@pytest.mark.parametrize(
    "options",
    [
        ProfileOptions(),
        ProfileOptions(retain_long_modified_dates=True),
        ProfileOptions(clean_descriptors=True, clean_structured_content=True, clean_graphics=True),
    ],
    ids=["basic", "modified-dates", "clean"],
)
def test_no_removed_or_replaced_value_survives_in_the_bytes(options):
    # Planted dates are 37 days apart: a shift that is a multiple of 37 could map one planted
    # date onto another and fake a leak.
    assert shift_days(KEY, "MRN0001") % 37 != 0
    out, planted, log = scrubbed(options)
    leaks = [
        (p.token, hex(p.tag)) for p in planted if not _kept(p, options) and p.token.encode() in out
    ]
    assert leaks == []
    for identifier in (b"MRN0001", b"Doe0001", b"1.2.826.0.1.70001", b"1.2.826.0.1.800001"):
        assert identifier not in out
    assert log.counts()["X"] > 250


def test_nested_sequences_and_private_tags_are_handled():
    out, planted, _ = scrubbed(ProfileOptions())
    nested = [p for p in planted if p.nested]
    assert len(nested) > 100
    ds = pydicom.dcmread(io.BytesIO(out))
    assert not any(elem.tag.is_private for elem in ds.iterall())
    assert (0x6000, 0x3000) not in ds and (0x6000, 0x0010) not in ds  # whole overlay group
    kept = ds.ReferencedImageSequence[0]  # X/Z/U*: kept, UID remapped
    assert kept.ReferencedSOPInstanceUID.startswith("2.25.")


def test_retain_options_keep_exactly_their_attributes():
    options = ProfileOptions(
        retain_long_full_dates=True,
        retain_patient_chars=True,
        retain_device_id=True,
        retain_institution_id=True,
        retain_uids=True,
    )
    out, planted, _ = scrubbed(options)
    ds = pydicom.dcmread(io.BytesIO(out))
    checked = 0
    for p in planted:
        kept = any(getattr(options, name) and a == "K" for name, a in p.row.option_actions.items())
        if kept and not p.nested:
            assert p.tag in ds and p.token in str(ds[p.tag].value), p
            checked += 1
        elif not kept:
            assert p.token.encode() not in out, p
    assert checked > 150
    assert ds.SOPInstanceUID == "1.2.826.0.1.800001.1"
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"


def test_clean_descriptors_keeps_only_safe_words():
    ds, _ = crafted_dataset()
    ds.SeriesDescription = "CHEST PA John Smith 12345678"
    ds.StudyDescription = "Dr Who follow up"
    deidentify(ds, ProfileOptions(clean_descriptors=True), KEY)
    assert ds.SeriesDescription == "CHEST PA"
    assert ds.StudyDescription == "follow up"
    plain, _ = crafted_dataset()
    plain.SeriesDescription = "CHEST PA"
    deidentify(plain, ProfileOptions(), KEY)
    assert "SeriesDescription" not in plain


def test_referential_integrity_across_files():
    first, _ = crafted_dataset(patient="0007", instance=1)
    second, _ = crafted_dataset(patient="0007", instance=2, referenced_sop_uid=first.SOPInstanceUID)
    for ds in (first, second):
        deidentify(ds, ProfileOptions(), KEY)
    new_uid = first.SOPInstanceUID
    assert new_uid.startswith("2.25.") and len(new_uid) <= 64
    assert first.file_meta.MediaStorageSOPInstanceUID == new_uid
    assert second.ReferencedImageSequence[0].ReferencedSOPInstanceUID == new_uid
    assert second.SourceImageSequence[0].ReferencedSOPInstanceUID == new_uid
    assert second.ReferencedImageSequence[0].ReferencedSOPClassUID == first.SOPClassUID
    assert first.StudyInstanceUID == second.StudyInstanceUID
    assert first.PatientID == second.PatientID and first.PatientName == second.PatientName
    assert first.SOPInstanceUID != second.SOPInstanceUID


def test_same_key_same_bytes_other_key_other_pseudonyms():
    a, _, _ = scrubbed(ProfileOptions(retain_long_modified_dates=True))
    b, _, _ = scrubbed(ProfileOptions(retain_long_modified_dates=True))
    assert a == b
    c, _, _ = scrubbed(ProfileOptions(retain_long_modified_dates=True), key=OTHER_KEY)
    ds_a, ds_c = pydicom.dcmread(io.BytesIO(a)), pydicom.dcmread(io.BytesIO(c))
    assert ds_a.PatientID != ds_c.PatientID
    assert ds_a.SOPInstanceUID != ds_c.SOPInstanceUID


def test_pseudonyms_are_keyed_not_plain_hashes():
    pid = pseudonym_id(KEY, "MRN0001")
    digest = hashlib.sha256(b"MRN0001").hexdigest().upper()
    assert pid[1:] not in digest and pid[1:].lower() not in digest.lower()
    assert pid != pseudonym_id(OTHER_KEY, "MRN0001")
    assert pid == pseudonym_id(KEY, " MRN0001 ")
    assert remap_uid(KEY, "1.2.3") != remap_uid(OTHER_KEY, "1.2.3")
    assert remap_uid(KEY, "1.2.840.10008.1.2") == "1.2.840.10008.1.2"  # well-known UID


def test_date_shift_is_per_patient_and_keeps_intervals():
    options = ProfileOptions(retain_long_modified_dates=True)
    studies = []
    for instance, date in ((1, "20200110"), (2, "20200305")):
        ds, _ = crafted_dataset(patient="0042", instance=instance)
        ds.StudyDate, ds.AcquisitionDateTime = date, date + "083000.5+0100"
        deidentify(ds, options, KEY)
        studies.append(ds)
    days = [dt.datetime.strptime(ds.StudyDate, "%Y%m%d").date() for ds in studies]
    assert (days[1] - days[0]).days == 55
    shift = shift_days(KEY, "MRN0042")
    assert 1 <= shift <= 3650
    assert studies[0].StudyDate == shift_date("20200110", shift) != "20200110"
    assert str(studies[0].AcquisitionDateTime).endswith("083000.5+0100")
    assert studies[0].LongitudinalTemporalInformationModified == "MODIFIED"
    other, _ = crafted_dataset(patient="0043")
    other.StudyDate = "20200110"
    deidentify(other, options, KEY)
    other_shift = shift_days(KEY, "MRN0043")
    assert other_shift != shift  # holds for this key; patients get their own shift
    assert other.StudyDate == shift_date("20200110", other_shift)


def test_date_helpers():
    assert shift_date("20200301", 1) == "20200229"
    assert shift_date("2020.03.01", 1) == "20200229"
    assert shift_date("2020-13-01", 1) is None and shift_date("garbage", 3) is None
    assert shift_datetime("20200301120000", 1) == "20200229120000"
    assert shift_datetime("2020", 400) == "2019"


def test_marks_list_the_applied_options():
    ds, _ = crafted_dataset()
    options = ProfileOptions(retain_uids=True, clean_graphics=True, pixels_cleaned=True)
    deidentify(ds, options, KEY)
    assert ds.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113101", "113103", "113110"]
    assert all(i.CodingSchemeDesignator == "DCM" for i in ds.DeidentificationMethodCodeSequence)
    assert OPTION_CODES["retain_uids"][1] in ds.DeidentificationMethod
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


def test_safe_private_list_keeps_only_listed_private_tags():
    options = ProfileOptions(retain_safe_private=True, safe_private=frozenset({("QCREATOR", 9, 1)}))
    ds, _ = crafted_dataset()
    deidentify(ds, options, KEY)
    assert ds[0x00091001].value == "QP10000T" and ds[0x00090010].value == "QCREATOR"
    assert 0x00091002 not in ds  # same creator, not listed
    assert not any(e.tag.group == 0x0029 for e in ds.iterall())  # nested, other group


def test_plan_does_not_change_the_dataset_and_matches_deidentify():
    ds, _ = crafted_dataset()
    before = write(copy.deepcopy(ds))
    planned = plan(ds, ProfileOptions(), KEY)
    assert write(ds) == before
    assert planned == deidentify(ds, ProfileOptions(), KEY).records
    assert {r.action for r in planned} >= {"X", "Z", "D", "U"}
    assert all("QV" not in r.path and "QV" not in r.name for r in planned)


def test_pixel_data_is_untouched():
    ds, _ = crafted_dataset()
    pixels = bytes(ds.PixelData)
    out, _, _ = scrubbed(ProfileOptions())
    assert pydicom.dcmread(io.BytesIO(out)).PixelData == pixels


@pytest.mark.parametrize(
    ("attrs", "flagged"),
    [
        ({"BurnedInAnnotation": "YES", "Modality": "CT"}, "Burned In Annotation"),
        ({"Modality": "US", "BurnedInAnnotation": "NO"}, "ultrasound"),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, "secondary capture"),
        ({"Modality": "CT", "BurnedInAnnotation": "NO"}, None),
    ],
)
def test_needs_quarantine(attrs, flagged):
    ds = pydicom.Dataset()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    reason = needs_quarantine(ds)
    assert reason is None if flagged is None else flagged in reason


def test_sequence_stored_as_un_is_still_walked():
    from pydicom.dataelem import RawDataElement
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element
    from pydicom.sequence import Sequence
    from pydicom.tag import Tag

    inner = pydicom.Dataset()
    inner.PatientName = "Secret^Name"  # a profile attribute nested in a sequence the table
    inner.CodeValue = "T-D3000"  # does not list (Anatomic Region Sequence)
    holder = pydicom.Dataset()
    holder.AnatomicRegionSequence = Sequence([inner])
    encoded = DicomBytesIO()
    encoded.is_little_endian, encoded.is_implicit_VR = True, True
    write_data_element(encoded, holder["AnatomicRegionSequence"])
    value = encoded.getvalue()[8:]  # implicit VR: tag and length precede the items

    ds, _ = crafted_dataset()
    tag = Tag(0x00082218)
    ds._dict[tag] = RawDataElement(tag, "UN", len(value), value, 0, True, True)
    deidentify(ds, ProfileOptions(), KEY)
    out = write(ds)
    assert b"Secret" not in out
    assert b"T-D3000" in out  # codes are kept
