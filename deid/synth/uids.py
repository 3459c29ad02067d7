"""DICOM UIDs of a phantom release, under the ``2.25`` root (UUID-derived integers, PS3.5 B.2).

One StudyInstanceUID per visit, one SeriesInstanceUID and FrameOfReferenceUID per series, one
SOPInstanceUID per file; all derived from the release seed so a rerun gives the same UIDs.
"""

from __future__ import annotations

from dataclasses import dataclass

from deid.synth.derive import derived_int
from reid_model.phantoms.types import PhantomImage

UID_ROOT = "2.25."


@dataclass(frozen=True)
class ImageUIDs:
    """UIDs of the files written for one :class:`PhantomImage`."""

    study: str
    series: str
    frame_of_reference: str
    sop_instances: tuple[str, ...]  # one per file: per slice for volumes, one for 2D


def make_uid(seed: int, *parts: object) -> str:
    """Return a ``2.25.<int>`` UID determined by ``seed`` and ``parts`` (at most 44 characters)."""
    return f"{UID_ROOT}{derived_int(seed, 'uid', *parts)}"


def uids_for(image: PhantomImage, seed: int) -> ImageUIDs:
    """Return the UIDs for the files of ``image``.

    Parameters
    ----------
    image
        One visit of one phantom patient; volumes get one SOP instance per slice.
    seed
        Release seed.
    """
    visit = (image.patient, image.visit)
    n_files = image.pixels.shape[0] if image.is_volume else 1
    return ImageUIDs(
        study=make_uid(seed, "study", *visit),
        series=make_uid(seed, "series", image.dataset, *visit),
        frame_of_reference=make_uid(seed, "frame-of-reference", image.dataset, *visit),
        sop_instances=tuple(
            make_uid(seed, "sop", image.dataset, *visit, i) for i in range(n_files)
        ),
    )
