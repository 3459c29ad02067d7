"""Synthetic phantom patients: the embedded default data of mami-deid."""

from reid_model.phantoms.types import DATASETS, PhantomImage

__all__ = ["DATASETS", "PhantomImage"]
