"""Re-identification data: where images come from, how they are labelled, preprocessed, cached
and augmented.

Two sources share one interface (:class:`ImageSource`):

* ``phantom:<datasets>:<patients>:<visits>[:seed]`` renders phantom patients in memory
  (``datasets`` is a comma-separated list of phantom dataset names, or ``all``);
* a release folder written by ``deid synth``, labelled by the ``<folder>.truth.csv`` beside it
  (or the path of that CSV itself).

:class:`ReidDataset` turns the entries of one split into preprocessed tensors with integer
patient labels; :func:`augment` is the batch-level training augmentation.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deid.errors import InputError, UnreadableFileError
from reid_model.config import PreprocessConfig

if TYPE_CHECKING:
    from reid_model.phantoms.types import PhantomImage

SPLITS = ("train", "val", "test")
# truth.csv columns that are not findings
TRUTH_COLUMNS = ("file", "patient", "dataset", "visit", "split", "slice")


@dataclass(frozen=True)
class ImageEntry:
    """One image (or volume) of one patient visit, before its pixels are read.

    ``key`` identifies the pixels inside the source: ``(dataset, patient_index, visit)`` for
    phantoms, the tuple of file paths (slice order) for a release folder.
    """

    patient: str
    dataset: str
    visit: int
    split: str
    findings: dict[str, bool] = field(default_factory=dict, compare=False)
    key: tuple = ()


class ImageSource(Protocol):
    """A labelled collection of images: entries first, pixels on demand."""

    entries: list[ImageEntry]

    def load(self, entry: ImageEntry) -> tuple[np.ndarray, str]:
        """Return float32 pixels in modality units and the DICOM modality of ``entry``."""
        ...


class ReidSample(NamedTuple):
    """What a :class:`ReidDataset` yields (the default collate keeps this type)."""

    pixels: torch.Tensor  # (3, H, W) or (S, 3, H, W), preprocessed
    label: int  # patient index within the dataset's label map
    patient: str
    dataset: str
    visit: int
    split: str


# ---------------------------------------------------------------------------------------------
# sources


class PhantomSource:
    """Phantom patients rendered in memory by ``reid_model.phantoms``; no files are written.

    Parameters
    ----------
    datasets : sequence of str
        Phantom dataset names (see ``reid_model.phantoms.DATASETS``).
    n_patients, n_visits : int
        Patients per dataset and visits per patient.
    seed : int
        Seed of the phantom world (anatomy, visits and splits).
    """

    def __init__(self, datasets: Sequence[str], n_patients: int, n_visits: int, seed: int = 0):
        from reid_model.phantoms.findings import visit_findings
        from reid_model.phantoms.protocol import split_of
        from reid_model.phantoms.types import DATASETS

        unknown = [d for d in datasets if d not in DATASETS]
        if unknown:
            raise InputError(
                f"unknown phantom dataset(s) {unknown}; choose from {sorted(DATASETS)} or 'all'"
            )
        if n_patients < 1 or n_visits < 1:
            raise InputError(
                f"phantom data needs at least 1 patient and 1 visit, got {n_patients} "
                f"patients x {n_visits} visits"
            )
        self.seed = seed
        self.modalities = {d: DATASETS[d] for d in datasets}
        self.entries = [
            ImageEntry(
                patient=phantom_patient_key(dataset, index),
                dataset=dataset,
                visit=visit,
                split=split_of(index, seed),
                findings=visit_findings(seed, dataset, index, visit),
                key=(dataset, index, visit),
            )
            for dataset in dict.fromkeys(datasets)  # each once, in the given order
            for index in range(n_patients)
            for visit in range(n_visits)
        ]

    def render(self, entry: ImageEntry) -> PhantomImage:
        from reid_model.phantoms.generator import render

        dataset, index, visit = entry.key
        image = render(dataset, index, visit, self.seed)
        if image.patient != entry.patient:
            raise InputError(
                f"phantom renderer named patient {image.patient!r}, expected {entry.patient!r}; "
                "reid_model.data.phantom_patient_key is out of date with reid_model.phantoms"
            )
        return image

    def load(self, entry: ImageEntry) -> tuple[np.ndarray, str]:
        image = self.render(entry)
        return image.pixels.astype(np.float32), self.modalities[entry.dataset]


def phantom_patient_key(dataset: str, index: int) -> str:
    """Patient key of phantom ``index`` in ``dataset`` (matches ``PhantomImage.patient``)."""
    return f"{dataset}-{index:05d}"


class ReleaseSource:
    """A release folder written by ``deid synth`` and its truth CSV.

    Rows of one (dataset, patient, visit) in one folder form one image; several rows are the
    slices of a volume, in the order of the ``slice`` column. A visit written in several
    formats (``deid synth --format both``) is used once: its copy that comes first by path.
    """

    def __init__(self, folder: Path, truth_csv: Path):
        self.folder = folder
        self.truth_csv = truth_csv
        groups: dict[tuple[str, str, int, str], list[dict[str, str]]] = {}
        with truth_csv.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in TRUTH_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(
                    f"{truth_csv} lacks column(s) {missing}; pass the truth CSV written by "
                    "`deid synth` next to the release folder"
                )
            finding_names = [c for c in reader.fieldnames or [] if c not in TRUTH_COLUMNS]
            for row in reader:
                # slices of one volume share a folder; a 2D image is a group of its own
                where = str(Path(row["file"]).parent) if row["slice"] else row["file"]
                key = (row["dataset"], row["patient"], int(row["visit"]), where)
                groups.setdefault(key, []).append(row)
        chosen: dict[tuple[str, str, int], list[dict[str, str]]] = {}
        for key in sorted(groups, key=lambda k: (k[:3], min(r["file"] for r in groups[k]))):
            chosen.setdefault(key[:3], groups[key])
        self.entries = []
        for (dataset, patient, visit), rows in sorted(chosen.items()):
            rows.sort(key=lambda r: int(r["slice"] or 0))
            findings = {
                name: rows[0][name].strip().lower() in ("1", "true", "yes")
                for name in finding_names
                if rows[0][name].strip() != ""
            }
            self.entries.append(
                ImageEntry(
                    patient=patient,
                    dataset=dataset,
                    visit=visit,
                    split=rows[0]["split"],
                    findings=findings,
                    key=tuple(r["file"] for r in rows),
                )
            )

    def load(self, entry: ImageEntry) -> tuple[np.ndarray, str]:
        from deid.io import ReleaseItem, load, sniff

        paths = tuple(self.folder / name for name in entry.key)
        kinds = {sniff(path) for path in paths}
        if None in kinds or len(kinds) != 1:
            raise UnreadableFileError(
                str(paths[0]),
                f"expected image files of one format, found {sorted(map(str, kinds))}; the "
                "truth CSV does not match the release folder",
            )
        kind = kinds.pop()
        if kind == "dicom" and len(paths) > 1:  # a series: the DICOM reader orders the slices
            record = load(ReleaseItem(f"{entry.key[0]}#series", paths, "dicom"))
            return np.asarray(record.pixels, dtype=np.float32), record.modality
        records = [
            load(ReleaseItem(name, (path,), kind))
            for name, path in zip(entry.key, paths, strict=True)
        ]
        if len(records) == 1:
            return np.asarray(records[0].pixels, dtype=np.float32), records[0].modality
        shapes = {r.pixels.shape for r in records}
        if len(shapes) != 1:
            raise UnreadableFileError(
                str(paths[0]), f"slices of this volume have different shapes {sorted(shapes)}"
            )
        return np.stack([r.pixels for r in records]).astype(np.float32), records[0].modality


def open_source(spec: str) -> ImageSource:
    """Parse a ``--data`` value into an :class:`ImageSource`.

    Parameters
    ----------
    spec : str
        ``phantom:<datasets>:<patients>:<visits>[:seed]`` or a release folder / truth CSV.

    Raises
    ------
    InputError
        The spec is malformed or the folder has no truth CSV.
    """
    if spec.startswith("phantom:"):
        return _parse_phantom_spec(spec)
    path = Path(spec).expanduser()
    if path.suffix == ".csv":
        truth = path
        folder = path.with_name(path.name.removesuffix(".csv").removesuffix(".truth"))
    else:
        folder = path
        truth = path.with_name(path.name + ".truth.csv")
    if not folder.is_dir():
        raise InputError(f"release folder {folder} does not exist; check --data")
    if not truth.is_file():
        raise InputError(
            f"no truth CSV at {truth}; training and evaluation need the patient labels that "
            "`deid synth` writes beside the release folder"
        )
    return ReleaseSource(folder, truth)


def _parse_phantom_spec(spec: str) -> PhantomSource:
    from reid_model.phantoms import DATASETS

    parts = spec.split(":")
    usage = "expected phantom:<datasets|all>:<patients>:<visits>[:seed], e.g. phantom:all:20:3"
    if len(parts) not in (4, 5):
        raise InputError(f"bad data spec {spec!r}: {usage}")
    names = list(DATASETS) if parts[1] == "all" else [p for p in parts[1].split(",") if p]
    try:
        numbers = [int(p) for p in parts[2:]]
    except ValueError:
        raise InputError(f"bad data spec {spec!r}: {usage}") from None
    seed = numbers[2] if len(numbers) == 3 else 0
    return PhantomSource(names, numbers[0], numbers[1], seed)


def label_map(entries: Sequence[ImageEntry]) -> dict[str, int]:
    """Contiguous integer labels for the patients of ``entries``, in sorted key order."""
    return {patient: i for i, patient in enumerate(sorted({e.patient for e in entries}))}


def split_entries(source: ImageSource, split: str) -> list[ImageEntry]:
    """The entries of ``split``; raises :class:`InputError` when there are none."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose from {SPLITS}")
    chosen = [e for e in source.entries if e.split == split]
    if not chosen:
        raise InputError(
            f"the data has no {split!r} images; use more patients so every split gets some"
        )
    return chosen


# ---------------------------------------------------------------------------------------------
# dataset


class ReidDataset(Dataset[ReidSample]):
    """Preprocessed images of some entries of a source, labelled by patient.

    Parameters
    ----------
    source : ImageSource
        Where pixels come from.
    entries : sequence of ImageEntry
        The images of this dataset (usually one split).
    preprocess_cfg : PreprocessConfig
        Passed to ``reid_model.preprocess.preprocess``.
    volume_mode : {"volume", "slice"}
        "volume" yields volumes as (S, 3, H, W); "slice" yields one slice (3, H, W) chosen by
        :meth:`set_slice_seed` (the centre slice until then), so volumes batch with 2D images.
    """

    def __init__(
        self,
        source: ImageSource,
        entries: Sequence[ImageEntry],
        preprocess_cfg: PreprocessConfig,
        volume_mode: Literal["volume", "slice"] = "volume",
    ) -> None:
        self.source = source
        self.entries = list(entries)
        self.preprocess_cfg = preprocess_cfg
        self.volume_mode = volume_mode
        self.labels_by_patient = label_map(self.entries)
        self.labels = [self.labels_by_patient[e.patient] for e in self.entries]
        self._cache: list[torch.Tensor] | None = None
        self._slice_seed: int | None = None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def cached(self) -> bool:
        """True once :meth:`preload` has run."""
        return self._cache is not None

    def preprocessed(self, index: int) -> torch.Tensor:
        """The preprocessed tensor of item ``index`` (full volume for volumes)."""
        if self._cache is not None:
            return self._cache[index].float()
        from reid_model.preprocess import preprocess

        pixels, modality = self.source.load(self.entries[index])
        return preprocess(pixels, modality, self.preprocess_cfg)

    def __getitem__(self, index: int) -> ReidSample:
        x = self.preprocessed(index)
        if self.volume_mode == "slice" and x.ndim == 4:
            x = x[self._slice_index(index, x.shape[0])]
        e = self.entries[index]
        return ReidSample(x, self.labels[index], e.patient, e.dataset, e.visit, e.split)

    def _slice_index(self, index: int, depth: int) -> int:
        if self._slice_seed is None:
            return depth // 2
        generator = torch.Generator().manual_seed(self._slice_seed * 1_000_003 + index)
        lo, hi = depth // 4, max(depth // 4 + 1, (3 * depth + 3) // 4)
        return int(torch.randint(lo, hi, (1,), generator=generator))

    def preload(self, num_workers: int = 0) -> None:
        """Read and preprocess every item once and keep it in memory (as float16).

        Rendering and decoding run in ``num_workers`` DataLoader workers. Items of deterministic
        sources (phantoms) are also kept in a bounded per-process cache, so training and then
        evaluating in one process, or several runs in one test session, render them once.
        """
        if self._cache is not None:
            return
        cache: list[torch.Tensor | None] = [None] * len(self)
        keys = [_cache_key(self.source, e, self.preprocess_cfg) for e in self.entries]
        for i, key in enumerate(keys):
            if key is not None:
                cache[i] = _PROCESS_CACHE.get(key)
        missing = [i for i, x in enumerate(cache) if x is None]
        loader = DataLoader(
            _Preprocessed(self, missing),
            batch_size=None,
            num_workers=num_workers,
            collate_fn=_identity,
        )
        for i, tensor in zip(missing, loader, strict=True):
            cache[i] = tensor.to(torch.float16)
            if keys[i] is not None:
                _PROCESS_CACHE.put(keys[i], cache[i])
        self._cache = cache  # type: ignore[assignment]

    def set_slice_seed(self, seed: int | None) -> None:
        """In "slice" mode, pick a random slice from the middle half of each volume, drawn from
        a generator seeded by ``(seed, index)``; ``None`` picks the centre slice."""
        self._slice_seed = seed


class _Preprocessed(Dataset):
    """Position ``j`` -> preprocessed tensor of item ``indices[j]``, for
    :meth:`ReidDataset.preload`."""

    def __init__(self, dataset: ReidDataset, indices: list[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> torch.Tensor:
        return self.dataset.preprocessed(self.indices[position])


class _TensorCache:
    """First-in-first-out cache of tensors, bounded by their total size in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.items: dict[Hashable, torch.Tensor] = {}

    def get(self, key: Hashable) -> torch.Tensor | None:
        return self.items.get(key)

    def put(self, key: Hashable, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if size > self.max_bytes or key in self.items:
            return
        while self.used + size > self.max_bytes:
            dropped = self.items.pop(next(iter(self.items)))
            self.used -= dropped.numel() * dropped.element_size()
        self.items[key] = tensor
        self.used += size


# phantom items already preprocessed in this process (deterministic from their key)
_PROCESS_CACHE = _TensorCache(512 * 2**20)


def _cache_key(
    source: ImageSource, entry: ImageEntry, preprocess_cfg: PreprocessConfig
) -> Hashable | None:
    if not isinstance(source, PhantomSource):  # files may change between runs
        return None
    return ("phantom", source.seed, entry.key, preprocess_cfg)


def _identity(x: object) -> object:
    return x


# ---------------------------------------------------------------------------------------------
# augmentation


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation strengths. No flips: laterality is part of the image."""

    min_area: float = 0.8  # random resized crop keeps at least this fraction of the image
    max_shift: float = 0.05  # translation as a fraction of the image size
    max_rotation_deg: float = 8.0
    brightness: float = 0.15  # additive, in normalised intensity units
    contrast: float = 0.15  # multiplicative factor in [1 - c, 1 + c]


def augment(
    x: torch.Tensor, generator: torch.Generator, cfg: AugmentConfig = AugmentConfig()
) -> torch.Tensor:
    """Random resized crop, small rotation and shift, brightness and contrast, per sample.

    Parameters
    ----------
    x : Tensor
        (B, C, H, W) preprocessed images, any device.
    generator : torch.Generator
        CPU generator; the only source of randomness.
    cfg : AugmentConfig
        Strengths.

    Returns
    -------
    Tensor
        Augmented images, same shape, dtype and device.
    """
    if x.ndim != 4:
        raise ValueError(f"augment expects (B, C, H, W), got shape {tuple(x.shape)}")
    b = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=generator, dtype=torch.float32)

    zoom = torch.sqrt(uniform(cfg.min_area, 1.0))  # crop side relative to the image
    angle = uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg) * (math.pi / 180.0)
    shift = torch.stack([uniform(-cfg.max_shift, cfg.max_shift) for _ in range(2)], dim=1) * 2
    gain = uniform(1 - cfg.contrast, 1 + cfg.contrast)
    offset = uniform(-cfg.brightness, cfg.brightness)

    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    ).to(device=x.device, dtype=torch.float32)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    # border padding: a crop of a radiograph should not invent black margins
    out = torch.nn.functional.grid_sample(
        x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    gain = gain.to(x.device).view(b, 1, 1, 1)
    offset = offset.to(x.device).view(b, 1, 1, 1)
    return ((out - mean) * gain + mean + offset).to(x.dtype)
