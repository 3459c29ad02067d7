"""Deterministic values derived from the release seed and a label, so that every piece of fake
PHI and every UID depends only on (seed, what it is for) and never on the order of generation."""

from __future__ import annotations

import hashlib

import numpy as np


def derived_int(seed: int, *parts: object, bits: int = 128) -> int:
    """Return a ``bits``-bit integer determined by ``seed`` and ``parts``.

    Parameters
    ----------
    seed
        Release seed.
    *parts
        Labels naming what the value is for (e.g. ``"study-uid", patient, visit``).
    bits
        Width of the result; at most 256.

    Returns
    -------
    int
        A non-negative integer below ``2**bits``.
    """
    label = "\x1f".join([str(seed), *map(str, parts)])
    digest = hashlib.sha256(label.encode("utf-8")).digest()
    return int.from_bytes(digest, "big") >> (256 - bits)


def derived_rng(seed: int, *parts: object) -> np.random.Generator:
    """Return a generator seeded from ``seed`` and ``parts`` (see :func:`derived_int`)."""
    return np.random.default_rng(derived_int(seed, *parts))


def scrambled(index: int, modulus: int, seed: int, *parts: object) -> int:
    """Map ``index`` to ``[0, modulus)`` by a seeded affine bijection.

    Distinct indices below ``modulus`` give distinct results, so identifiers built from them
    (record numbers, accession numbers) never collide while still looking random.
    ``modulus`` must be a power of ten.
    """
    multiplier = derived_int(seed, "multiplier", *parts, bits=64) % modulus
    # a multiplier coprime to 10**k is a unit mod 10**k: odd and not a multiple of 5
    multiplier = multiplier | 1
    if multiplier % 5 == 0:
        multiplier = (multiplier + 2) % modulus
    offset = derived_int(seed, "offset", *parts, bits=64) % modulus
    return (multiplier * index + offset) % modulus
