"""The answer key of a release: which patient, dataset and visit each file shows.

Read from the truth CSV that ``deid synth`` writes beside a release (columns ``file``,
``patient``, ``dataset``, ``visit``, ``slice``, ...). It also decides what one scored image is:
files that the CSV puts in one (dataset, patient, visit) form one volume, as in
``deid evaluate``, so both commands score the same images.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deid.errors import InputError
from deid.io.record import ReleaseItem, Skipped
from deid.score.embed import Unit

REQUIRED_COLUMNS = ("file", "patient", "dataset", "visit")


@dataclass(frozen=True)
class Label:
    patient: str
    dataset: str
    visit: int


@dataclass(frozen=True)
class TruthTable:
    source: Path
    by_file: dict[str, Label]  # release-relative posix path -> label
    slice_of: dict[str, int]  # slice order of files that belong to a multi-file volume


def read_truth(path: Path) -> TruthTable:
    """Read a truth CSV.

    Raises
    ------
    InputError
        If the file is missing, lacks a required column, or has a malformed row.
    """
    if not path.is_file():
        raise InputError(
            f"truth CSV {path} does not exist; pass the <release>.truth.csv written beside the "
            "release, or leave out --truth"
        )
    by_file: dict[str, Label] = {}
    slice_of: dict[str, int] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(
                    f"truth CSV {path} lacks the column(s) {missing}; it needs "
                    f"{list(REQUIRED_COLUMNS)} (and optionally slice), as `deid synth` writes"
                )
            for line, row in enumerate(reader, start=2):
                try:
                    label = Label(row["patient"], row["dataset"], int(row["visit"]))
                    slice_of[row["file"]] = int(row.get("slice") or 0)
                except (TypeError, ValueError):
                    raise InputError(
                        f"truth CSV {path} line {line}: visit and slice must be integers; "
                        "fix the row or regenerate the CSV"
                    ) from None
                by_file[row["file"]] = label
    except UnicodeDecodeError as exc:
        raise InputError(
            f"truth CSV {path} is not UTF-8 text ({exc.reason}); re-save it as UTF-8"
        ) from exc
    if not by_file:
        raise InputError(f"truth CSV {path} has no rows; pass the CSV that belongs to the release")
    return TruthTable(path, by_file, slice_of)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path != root else path.name


def build_units(
    items: Sequence[ReleaseItem],
    root: Path,
    truth: TruthTable | None,
    skipped: Sequence[Skipped] = (),
) -> tuple[list[Unit], list[Label | None]]:
    """Group discovered items into the images to score, and label them.

    Without truth every item is a unit. With truth, single files that the CSV places in the
    same (dataset, patient, visit) are stacked in slice order into one volume.

    Raises
    ------
    InputError
        If the truth CSV names files that are not in the release.
    """
    if truth is None:
        return [Unit(item.key, (item,)) for item in items], [None] * len(items)
    present = {_relative(p, root) for item in items for p in item.paths}
    present |= {_relative(Path(s.path), root) for s in skipped}
    unknown = sorted(set(truth.by_file) - present)
    if unknown:
        raise InputError(
            f"the truth CSV {truth.source} names {len(unknown)} file(s) that are not in the "
            f"release, e.g. {unknown[:3]}; pass the truth CSV that belongs to this release "
            "(file paths relative to the release folder)"
        )
    files_per_label: dict[Label, int] = {}
    for label in truth.by_file.values():
        files_per_label[label] = files_per_label.get(label, 0) + 1

    units: list[Unit] = []
    labels: list[Label | None] = []
    volumes: dict[Label, list[ReleaseItem]] = {}
    for item in items:
        rel = _relative(item.paths[0], root)
        label = truth.by_file.get(rel)
        if label is not None and len(item.paths) == 1 and files_per_label[label] > 1:
            if label not in volumes:
                volumes[label] = []
                units.append(Unit(item.key, ()))  # placeholder keeps release order
                labels.append(label)
            volumes[label].append(item)
            continue
        units.append(Unit(item.key, (item,)))
        labels.append(label)
    for i, label in enumerate(labels):
        if label is not None and not units[i].items:
            members = sorted(
                volumes[label], key=lambda it: truth.slice_of[_relative(it.paths[0], root)]
            )
            units[i] = Unit(members[0].key, tuple(members))
    return units, labels


def labels_from_pseudonyms(
    pseudonyms: Sequence[str], study_times: Sequence[str], modalities: Sequence[str]
) -> list[Label]:
    """Labels from the release's own PatientIDs (for originals, these are the identities).

    Each modality is one group; a patient's visits are ordered by study date and time, then by
    release order.
    """
    order = sorted(range(len(pseudonyms)), key=lambda i: (study_times[i], i))
    visit_of: dict[int, int] = {}
    seen: dict[tuple[str, str], int] = {}
    for i in order:
        key = (modalities[i], pseudonyms[i])
        visit_of[i] = seen.get(key, 0)
        seen[key] = visit_of[i] + 1
    return [Label(pseudonyms[i], modalities[i], visit_of[i]) for i in range(len(pseudonyms))]
