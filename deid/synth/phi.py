"""Fake but realistic PHI for phantom releases.

Patient-level values depend on (seed, patient key) only, so every visit and file of a patient
carries the same name, ID and birth date; site-level values depend on (seed, dataset, device);
visit-level values add the visit number. Dates of a visit are the patient's first-visit date
plus ``days_since_first_visit`` of the phantom image.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass

import numpy as np

from deid.synth import names
from deid.synth.derive import derived_rng, scrambled
from reid_model.phantoms.types import DATASETS, PhantomImage

# two-letter prefix of record and accession numbers per dataset (one institution per dataset)
_SITE_CODES: dict[str, str] = {
    "cxr_site_a": "SB",
    "cxr_site_b": "RV",
    "chest_ct": "WC",
    "fundus": "KE",
    "brain_mri": "BN",
}
_FIRST_VISIT_RANGE = (dt.date(2012, 1, 2), dt.date(2023, 12, 29))


@dataclass(frozen=True)
class Person:
    """A person's name in DICOM PN components."""

    family: str
    given: str
    prefix: str = ""

    @property
    def dicom(self) -> str:
        """``Family^Given`` or ``Family^Given^^Prefix`` as stored in a PN element."""
        if self.prefix:
            return f"{self.family}^{self.given}^^{self.prefix}"
        return f"{self.family}^{self.given}"

    @property
    def display(self) -> str:
        """``Given Family`` as printed on an image or in a note."""
        return " ".join(p for p in (self.prefix, self.given, self.family) if p)

    @property
    def file_token(self) -> str:
        """``FAMILY_GIVEN`` folded to ASCII for file names."""
        return f"{ascii_token(self.family)}_{ascii_token(self.given)}"


@dataclass(frozen=True)
class PatientPHI:
    """Identity of one phantom patient, identical across all of their visits."""

    name: Person
    patient_id: str
    birth_date: dt.date
    sex: str  # "F" or "M"
    address: str
    phone: str
    first_visit: dt.date
    referring_physician: Person
    height_m: float
    weight_kg: float


@dataclass(frozen=True)
class SitePHI:
    """Institution and device of one dataset (site) and device style."""

    institution: str
    address: str
    department: str
    manufacturer: str
    model: str
    software: str
    station_name: str
    device_serial: str
    staff: tuple[Person, ...]  # radiologists / ophthalmologists of the site


@dataclass(frozen=True)
class VisitPHI:
    """Everything identifying that a release writer puts into one visit's files."""

    patient: PatientPHI
    site: SitePHI
    study_datetime: dt.datetime
    accession: str
    study_id: str
    performing_physician: Person
    reading_physician: Person
    operator: Person

    @property
    def age_years(self) -> int:
        """Completed years between birth date and study date."""
        birth, day = self.patient.birth_date, self.study_datetime.date()
        return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))

    @property
    def age_string(self) -> str:
        """DICOM AS value, e.g. ``"064Y"``."""
        return f"{self.age_years:03d}Y"


# letters that Unicode does not decompose into an ASCII base letter
_ASCII_FOLD = str.maketrans(
    {
        "Ł": "L",
        "ł": "l",
        "Ø": "O",
        "ø": "o",
        "ß": "ss",
        "Æ": "AE",
        "æ": "ae",
        "Đ": "D",
        "đ": "d",
        "ı": "i",
    }
)


def ascii_token(text: str) -> str:
    """Fold ``text`` to upper-case ASCII letters/digits; other characters become ``-``."""
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD))
    folded = folded.encode("ascii", "ignore").decode("ascii")
    return "".join(c if c.isalnum() else "-" for c in folded.upper()).strip("-")


def _person(rng: np.random.Generator, sex: str, prefix: str = "") -> Person:
    given = names.GIVEN_FEMALE if sex == "F" else names.GIVEN_MALE
    return Person(str(rng.choice(names.FAMILY)), str(rng.choice(given)), prefix)


def _staff_member(seed: int, dataset: str, role: str, index: int) -> Person:
    rng = derived_rng(seed, "staff", dataset, role, index)
    prefix = "Dr" if role == "physician" else ""
    return _person(rng, "F" if rng.random() < 0.5 else "M", prefix)


def patient_phi(seed: int, dataset: str, patient: str, patient_index: int) -> PatientPHI:
    """Return the fake identity of one patient.

    Parameters
    ----------
    seed
        Release seed.
    dataset
        Dataset (site) the patient belongs to; selects the record-number prefix.
    patient
        Stable patient key of the phantom generator.
    patient_index
        Index of the patient inside its dataset; record numbers are a seeded bijection of it,
        so two patients of a site never share an ID.
    """
    rng = derived_rng(seed, "patient", patient)
    sex = "F" if rng.random() < 0.5 else "M"
    lo, hi = _FIRST_VISIT_RANGE
    first_visit = lo + dt.timedelta(days=int(rng.integers(0, (hi - lo).days)))
    age_days = int(rng.integers(20 * 365, 88 * 365))
    street = f"{int(rng.integers(1, 240))} {rng.choice(names.STREETS)}"
    city = str(rng.choice(names.CITIES))
    code = _SITE_CODES.get(dataset, "XX")
    number = scrambled(patient_index, 10**7, seed, "mrn", dataset)
    height = float(rng.normal(1.76 if sex == "M" else 1.63, 0.07))
    return PatientPHI(
        name=_person(rng, sex),
        patient_id=f"{code}{number:07d}",
        birth_date=first_visit - dt.timedelta(days=age_days),
        sex=sex,
        address=f"{street}, {city} {int(rng.integers(10000, 99999))}",
        phone=f"+1-555-{int(rng.integers(100, 999))}-{int(rng.integers(1000, 9999))}",
        first_visit=first_visit,
        referring_physician=_person(rng, "F" if rng.random() < 0.5 else "M", "Dr"),
        height_m=round(height, 2),
        weight_kg=round(float(rng.normal(24.0, 3.5)) * height * height, 1),
    )


def site_phi(seed: int, dataset: str, device: str) -> SitePHI:
    """Return institution, device and staff of ``dataset`` (one institution per dataset)."""
    modality = DATASETS[dataset]
    order = derived_rng(seed, "institutions").permutation(len(names.INSTITUTIONS))
    slot = list(DATASETS).index(dataset) % len(names.INSTITUTIONS)
    institution = names.INSTITUTIONS[int(order[slot])]
    rng = derived_rng(seed, "site", dataset, device)
    manufacturer, model, software = names.DEVICES[modality]
    city = str(derived_rng(seed, "site-city", dataset).choice(names.CITIES))
    return SitePHI(
        institution=institution,
        address=f"{int(rng.integers(1, 900))} {rng.choice(names.STREETS)}, {city}",
        department=names.DEPARTMENTS[modality],
        manufacturer=manufacturer,
        model=model,
        software=software,
        station_name=f"{modality}{ascii_token(device or dataset)[:6]}{int(rng.integers(1, 9))}",
        device_serial=f"{ascii_token(model)[:3]}{int(rng.integers(10**6, 10**7))}",
        staff=tuple(_staff_member(seed, dataset, "physician", i) for i in range(4)),
    )


def phi_for(image: PhantomImage, seed: int) -> VisitPHI:
    """Return the PHI a careless site would put into the files of ``image``.

    Parameters
    ----------
    image
        One visit of one phantom patient.
    seed
        Release seed; same seed and image give the same PHI.

    Returns
    -------
    VisitPHI
        Patient identity (shared by all visits of the patient), site and visit values.
    """
    patient = patient_phi(seed, image.dataset, image.patient, image.patient_index)
    site = site_phi(seed, image.dataset, image.device)
    rng = derived_rng(seed, "visit", image.patient, image.visit)
    # appointments between 07:30 and 18:30, to the second
    seconds = int(rng.integers(int(7.5 * 3600), int(18.5 * 3600)))
    study_day = patient.first_visit + dt.timedelta(days=image.days_since_first_visit)
    when = dt.datetime.combine(study_day, dt.time()) + dt.timedelta(seconds=seconds)
    serial = image.patient_index * 1000 + image.visit
    code = _SITE_CODES.get(image.dataset, "XX")
    accession = f"{code}{scrambled(serial, 10**10, seed, 'accession', image.dataset):010d}"
    return VisitPHI(
        patient=patient,
        site=site,
        study_datetime=when,
        accession=accession,
        study_id=str(int(rng.integers(1000, 99999))),
        performing_physician=site.staff[int(rng.integers(len(site.staff)))],
        reading_physician=site.staff[int(rng.integers(len(site.staff)))],
        operator=_person(rng, "F" if rng.random() < 0.5 else "M"),
    )
