"""The pixel cleaner the safe-copy pipeline calls per record (``pixel_cleaner`` hook of
:func:`deid.scrub.scrub_release`), and the per-patient reference embeddings it can use."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from deid.io.record import Record, Skipped
from deid.scrub.optimizer import PixelMetrics, embed_pixels, scrub_pixels
from deid.scrub.pixel_adversary import Adversary, load_adversary
from deid.scrub.pixel_objective import PatientContext
from deid.scrub.pixel_quantise import quantise
from deid.scrub.pixel_settings import DEFAULT_STRENGTH, PixelSettings, settings_for


def patient_id(record: Record) -> str | None:
    """The DICOM Patient ID of a record, or None (plain images carry none)."""
    value = record.metadata.get("PatientID")
    return str(value) if value else None


@dataclass
class ReferenceBank:
    """Embeddings of a release's images grouped by patient, per re-identifier.

    ``context(record)`` gives what the identity term uses beside the image itself: the
    embeddings of the same patient's other images (pushed away from), the mean embedding of the
    patient least like this one (the Fawkes-style decoy) and the mean embedding of the release's
    images of the same modality (subtracted when ``centred``).
    """

    keys: dict[str, list[str]] = field(default_factory=dict)  # patient -> record keys
    embeddings: dict[str, list[Tensor]] = field(default_factory=dict)  # patient -> per model (R, E)
    centres: dict[str, list[Tensor]] = field(default_factory=dict)  # modality -> per model (E,)
    models: int = 0  # re-identifiers embedded with
    # per model, (P, E) L2-normalised mean embedding of each patient, rows in ``keys`` order
    patient_means: list[Tensor] = field(default_factory=list)
    patient_of: Callable[[Record], str | None] = patient_id

    @classmethod
    def build(
        cls,
        records: Iterable[Record | Skipped],
        adversary: Adversary,
        patient_of: Callable[[Record], str | None] = patient_id,
    ) -> ReferenceBank:
        """Embed every record with every re-identifier of ``adversary`` (skipped files, e.g. from
        :func:`deid.io.discover.iter_records`, are ignored; records without a patient count
        towards the modality centres only)."""
        items = (
            (record.key, patient_of(record), record.pixels, record.modality)
            for record in records
            if isinstance(record, Record)
        )
        bank = cls.from_images(items, adversary)
        bank.patient_of = patient_of
        return bank

    @classmethod
    def from_images(
        cls, items: Iterable[tuple[str, str | None, np.ndarray, str]], adversary: Adversary
    ) -> ReferenceBank:
        """The bank of ``(key, patient, pixels, modality)`` items."""
        rows: dict[str, list[tuple[str, list[Tensor]]]] = {}
        by_modality: dict[str, list[list[Tensor]]] = {}
        models = range(len(adversary.reidentifiers))
        for key, patient, pixels, modality in items:
            embs = [embed_pixels(pixels, modality, adversary, i) for i in models]
            by_modality.setdefault(modality, []).append(embs)
            if patient is not None:
                rows.setdefault(patient, []).append((key, embs))
        bank = cls(models=len(models))
        for patient, entries in rows.items():
            bank.keys[patient] = [key for key, _ in entries]
            bank.embeddings[patient] = [torch.stack([e[i] for _, e in entries]) for i in models]
        if rows:
            bank.patient_means = [
                F.normalize(torch.stack([e[i].mean(0) for e in bank.embeddings.values()]), dim=-1)
                for i in models
            ]
        for modality, embs in by_modality.items():
            if len(embs) > 1:  # the mean of one image is the image: nothing would be left
                bank.centres[modality] = [torch.stack([e[i] for e in embs]).mean(0) for i in models]
        return bank

    def context(self, record: Record, with_decoy: bool = False) -> PatientContext:
        """The :class:`PatientContext` of ``record`` (entries None where the bank cannot tell;
        decoys only ``with_decoy``)."""
        return self.context_of(record.key, self.patient_of(record), record.modality, with_decoy)

    def context_of(
        self, key: str, patient: str | None, modality: str, with_decoy: bool = False
    ) -> PatientContext:
        """:meth:`context` of the image ``key`` of ``patient``."""
        empty = PatientContext.empty(self.models)
        centres = tuple(self.centres.get(modality, empty.centres))
        if patient not in self.keys:
            return dataclasses.replace(empty, centres=centres)
        keep = torch.tensor([k != key for k in self.keys[patient]])
        others = tuple(
            emb[keep.to(emb.device)] if bool(keep.any()) else None
            for emb in self.embeddings[patient]
        )
        decoys = self._decoys(patient) if with_decoy else empty.decoys
        return PatientContext(others, decoys, centres)

    def _decoys(self, patient: str) -> tuple[Tensor | None, ...]:
        """Per model, the mean embedding of the patient farthest from this one's mean."""
        if len(self.keys) < 2:
            return PatientContext.empty(self.models).decoys
        row = list(self.keys).index(patient)
        result = []
        for means in self.patient_means:
            similarity = means @ means[row]
            similarity[row] = float("inf")  # never the patient itself
            result.append(means[int(similarity.argmin())])
        return tuple(result)


def record_seed(seed: int, key: str) -> int:
    """Seed of one record's random transforms: fixed by the run seed and the record, whatever
    the order or the worker that processes it."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class PixelScrubber:
    """``Callable[[Record], np.ndarray]``: perturbs a record's pixels against the adversary.

    Output pixels are in the record's modality units, snapped to its stored grid; the metrics
    of each record are kept in ``metrics`` (by record key) for the manifest.

    Parameters
    ----------
    adversary
        Re-identifier(s) and MFM(s).
    settings
        Optimiser settings.
    seed
        Run seed; each record's transforms are seeded from it and the record key.
    references
        Per-patient embeddings of the release (optional): the identity term then also pushes
        away from the patient's other images, a decoy is used if ``lambda_decoy > 0``,
        and the release's modality centre is subtracted if ``centred``.
    strength
        Name of the strength the settings came from (recorded in the manifest), or ``custom``.
    """

    def __init__(
        self,
        adversary: Adversary,
        settings: PixelSettings,
        seed: int = 0,
        references: ReferenceBank | None = None,
        strength: str = "custom",
    ) -> None:
        self.adversary, self.settings, self.seed = adversary, settings, seed
        self.references = references
        self.strength = strength
        self.metrics: dict[str, PixelMetrics] = {}

    def describe(self) -> dict[str, object]:
        """What the manifest records about this cleaner (a resumed run must match it)."""
        return {"strength": self.strength, "seed": self.seed, **self.settings.to_dict()}

    def __call__(self, record: Record) -> np.ndarray:
        with_decoy = self.settings.lambda_decoy > 0
        context = self.references.context(record, with_decoy) if self.references else None
        generator = torch.Generator().manual_seed(record_seed(self.seed, record.key))
        pixels, metrics = scrub_pixels(
            record.pixels,
            record.modality,
            self.adversary,
            self.settings,
            generator,
            quantiser=functools.partial(quantise, record),
            context=context,
        )
        self.metrics[record.key] = metrics
        return pixels


def make_pixel_cleaner(
    checkpoints: Sequence[str | Path],
    *,
    strength: str = DEFAULT_STRENGTH,
    mfm_specs: Sequence[str] | None = None,
    device: str = "cpu",
    seed: int = 0,
    bf16: bool = False,
    release: Path | None = None,
    **overrides: float | int | None,
) -> PixelScrubber:
    """Build the pipeline's pixel cleaner from command-line style options.

    Parameters
    ----------
    checkpoints
        Re-identifier checkpoint folders; the first is the primary (defines the intensity
        domain), the others form an ensemble.
    strength
        ``low``, ``medium`` or ``high`` (see ``deid.scrub.pixel_settings.STRENGTHS``).
    mfm_specs
        MFM specs; None: those named by the primary checkpoint; []: no MFM term.
    device
        Torch device for the optimisation.
    seed
        Run seed (same seed and inputs give the same output).
    bf16
        Run the models under bfloat16 autocast (CUDA).
    release
        When given, every record of this folder is embedded first, so that the identity term
        also pushes each image away from its patient's other images (DICOM Patient ID) and a
        decoy can be chosen (``lambda_decoy > 0``). One extra read of the release.
    **overrides
        Any :class:`PixelSettings` field (``epsilon``, ``steps``, ``lambda_mfm``, ...); None
        values keep the strength's value.

    Raises
    ------
    InputError, CheckpointError
        Bad options, or models that cannot be loaded.
    """
    settings = settings_for(strength, **overrides)
    adversary = load_adversary(checkpoints, mfm_specs, device, bf16)
    references = None
    if release is not None:
        from deid.io.discover import iter_records

        references = ReferenceBank.build(iter_records(Path(release)), adversary)
    named = strength if not any(v is not None for v in overrides.values()) else "custom"
    return PixelScrubber(adversary, settings, seed=seed, references=references, strength=named)
