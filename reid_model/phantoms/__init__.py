"""Synthetic phantom patients: the embedded default data of mami-deid.

``render`` draws one visit of one patient (random access, deterministic from the seed);
``generate`` iterates a cohort; ``split_of`` and ``query_gallery`` define the protocol.
The renderers (scipy, Pillow) load on first use, so importing ``types`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from reid_model.phantoms.types import DATASETS, PhantomImage

_LAZY = {
    "FINDINGS": "reid_model.phantoms.findings",
    "generate": "reid_model.phantoms.generator",
    "render": "reid_model.phantoms.generator",
    "QueryGallery": "reid_model.phantoms.protocol",
    "query_gallery": "reid_model.phantoms.protocol",
    "split_of": "reid_model.phantoms.protocol",
}

__all__ = ["DATASETS", "PhantomImage", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reid_model.phantoms' has no attribute {name!r}")
