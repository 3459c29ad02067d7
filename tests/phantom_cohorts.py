"""Phantom cohorts for the training and evaluation tests."""

from __future__ import annotations

from reid_model.phantoms.protocol import split_of


def phantom_spec(datasets: str, patients: int, n_train: int, n_val: int) -> str:
    """A 2-visit phantom data spec whose cohort seed gives at least ``n_train`` training and
    exactly ``n_val`` validation patients per dataset (splits are drawn per patient)."""
    for seed in range(1000):
        splits = [split_of(i, seed) for i in range(patients)]
        if splits.count("train") >= n_train and splits.count("val") == n_val:
            return f"phantom:{datasets}:{patients}:2:{seed}"
    raise AssertionError("no phantom seed gives the wanted splits")
