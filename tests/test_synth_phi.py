from __future__ import annotations

import dataclasses

from test_synth_fixtures import phantom

from deid.synth.derive import scrambled
from deid.synth.phi import ascii_token, patient_phi, phi_for
from deid.synth.uids import uids_for


def test_same_patient_same_identity_across_visits_and_new_dates() -> None:
    first, later = phantom("cxr_site_a", 4, 0), phantom("cxr_site_a", 4, 2)
    a, b = phi_for(first, seed=7), phi_for(later, seed=7)
    assert a.patient == b.patient
    assert (b.study_datetime.date() - a.study_datetime.date()).days == 380
    assert a.accession != b.accession
    assert a.study_datetime.date() == a.patient.first_visit


def test_phi_depends_on_seed_and_patient() -> None:
    image = phantom("fundus", 1)
    assert phi_for(image, 1) == phi_for(image, 1)
    assert phi_for(image, 1).patient != phi_for(image, 2).patient
    assert phi_for(image, 1).patient != phi_for(phantom("fundus", 2), 1).patient


def test_age_matches_birth_date() -> None:
    for index in range(30):
        phi = phi_for(phantom("brain_mri", index, 1), seed=0)
        born, seen = phi.patient.birth_date, phi.study_datetime.date()
        assert 20 <= phi.age_years <= 90
        # completed years: the fractional age lies in [age, age + 1)
        assert 0 <= (seen - born).days / 365.2425 - phi.age_years < 1.01
        assert phi.age_string == f"{phi.age_years:03d}Y"


def test_patient_ids_unique_within_a_site_and_names_include_non_ascii() -> None:
    people = [patient_phi(3, "chest_ct", f"chest_ct-{i:05d}", i) for i in range(500)]
    assert len({p.patient_id for p in people}) == 500
    assert all(p.patient_id.startswith("WC") and len(p.patient_id) == 9 for p in people)
    assert any(not p.name.dicom.isascii() for p in people)
    assert {p.sex for p in people} == {"F", "M"}


def test_scrambled_is_a_bijection() -> None:
    values = {scrambled(i, 1000, 5, "x") for i in range(1000)}
    assert values == set(range(1000))


def test_ascii_token_folds_accents() -> None:
    assert ascii_token("Łukasiewicz") == "LUKASIEWICZ"
    assert ascii_token("Østergaard") == "OSTERGAARD"
    assert ascii_token("Nguyễn") == "NGUYEN"
    assert ascii_token("Zoë") == "ZOE"
    assert ascii_token("O'Brien") == "O-BRIEN"


def test_uids_per_visit_series_and_file() -> None:
    ct0, ct1 = phantom("chest_ct", 0, 0), phantom("chest_ct", 0, 1)
    u0, u1 = uids_for(ct0, 1), uids_for(ct1, 1)
    assert len(u0.sop_instances) == ct0.pixels.shape[0] == len(set(u0.sop_instances))
    assert u0.study != u1.study and u0.series != u1.series
    assert u0 == uids_for(dataclasses.replace(ct0, burn_in_phi=True), 1)
    for uid in (u0.study, u0.series, u0.frame_of_reference, *u0.sop_instances):
        assert uid.startswith("2.25.") and len(uid) <= 64
        assert all(part.isdigit() and (part == "0" or part[0] != "0") for part in uid.split("."))
