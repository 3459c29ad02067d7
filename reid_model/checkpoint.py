"""Checkpoint folders: ``model.safetensors`` (weights) + ``config.json`` (format version, model
config, preprocessing, calibration, free-form extra). Loading is strict and never unpickles."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from deid.errors import CheckpointError
from deid.io.atomic import atomic_write_bytes, atomic_write_text
from reid_model.config import ModelConfig

if TYPE_CHECKING:
    from reid_model.model import MaMI

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "config.json"


def write_weights_dir(
    path_dir: str | os.PathLike[str], state_dict: dict[str, Tensor], meta: dict[str, Any]
) -> None:
    """Write ``state_dict`` and the JSON ``meta`` into ``path_dir``, each file atomically.

    The JSON is written last, so a folder without it is recognisably incomplete.
    """
    from safetensors.torch import save

    folder = Path(path_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    atomic_write_bytes(folder / WEIGHTS_FILE, save(tensors))
    atomic_write_text(folder / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_weights_dir(
    path_dir: str | os.PathLike[str], kind: str, device: str | torch.device = "cpu"
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a folder written by ``write_weights_dir`` whose meta says ``kind``.

    Raises
    ------
    CheckpointError
        If a file is missing or corrupt, the kind differs or the format version is unknown.
    """
    from safetensors.torch import load

    folder = Path(path_dir)
    weights, meta_path = folder / WEIGHTS_FILE, folder / META_FILE
    for required in (weights, meta_path):
        if not required.is_file():
            raise CheckpointError(
                f"{required} is missing: {folder} is not a complete {kind} "
                "checkpoint folder. Point to the folder that training wrote."
            )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{meta_path} is not valid JSON ({exc}); the checkpoint is "
            "corrupt: restore it from a backup or train again."
        ) from exc
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        raise CheckpointError(
            f"{folder} is not a {kind} checkpoint (kind "
            f"{meta.get('kind') if isinstance(meta, dict) else None!r})."
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} has checkpoint format {meta.get('format_version')!r}; "
            f"this code reads format {FORMAT_VERSION}. Use the matching "
            "mami-deid version or train again."
        )
    try:
        state = load(weights.read_bytes())
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(
            f"{weights} cannot be read ({type(exc).__name__}: {exc}); the file "
            "is corrupt or truncated: restore it or train again."
        ) from exc
    return {k: v.to(device) for k, v in state.items()}, meta


def load_state_strictly(
    module: nn.Module, state: dict[str, Tensor], source: str, strict: bool = True
) -> dict[str, list[str]]:
    """Load ``state`` into ``module``; with ``strict`` any key or shape difference raises.

    Returns the missing and unexpected keys (empty when strict).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if wrong or (strict and (missing or unexpected)):
        raise CheckpointError(
            f"{source} does not match the model built from its config: missing keys {missing}, "
            f"unexpected keys {unexpected}, shape mismatches {wrong}. The checkpoint comes from "
            "another code version or was edited; retrain, or pass strict=False to ignore keys."
        )
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return {"missing_keys": missing, "unexpected_keys": unexpected}


def save_checkpoint(
    path_dir: str | os.PathLike[str],
    model: MaMI,
    cfg: ModelConfig,
    *,
    calibration: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Save ``model`` as a checkpoint folder.

    Parameters
    ----------
    path_dir
        Folder to create or update (files are replaced atomically).
    model
        The re-identifier; frozen MFMs are not saved (they are loaded from ``cfg.mfm``).
    cfg
        Its configuration, preprocessing included.
    calibration
        JSON-able calibrator state (``Calibrator.to_dict()``), or None.
    extra
        Free-form JSON-able information (training run, epoch, validation metrics).
    """
    meta = {
        "kind": "mami",
        "format_version": FORMAT_VERSION,
        "model_config": cfg.to_dict(),
        "preprocess": cfg.preprocess.to_dict(),
        "num_classes": model.num_classes,
        "mfm_dim": model.mfm_dim,
        "calibration": calibration,
        "extra": extra or {},
    }
    try:
        json.dumps(meta)
    except TypeError as exc:
        raise CheckpointError(f"calibration/extra must be JSON-serialisable: {exc}.") from exc
    write_weights_dir(path_dir, model.state_dict(), meta)


def load_checkpoint(
    path_dir: str | os.PathLike[str], *, device: str | torch.device = "cpu", strict: bool = True
) -> tuple[MaMI, ModelConfig, dict[str, Any]]:
    """Load a checkpoint folder written by ``save_checkpoint``.

    The frozen MFMs named in the config are not loaded (scoring does not need them); attach
    them with ``MaMI.attach_mfm`` to train further.

    Returns
    -------
    tuple[MaMI, ModelConfig, dict]
        The model in eval mode on ``device``, its config, and the metadata (``calibration``,
        ``extra``, ``preprocess``, ``num_classes``, ...; with ``strict=False`` also
        ``missing_keys`` / ``unexpected_keys``).

    Raises
    ------
    CheckpointError
        Missing or corrupt files, unknown format, config that does not parse, or (strict)
        weights that do not match the model.
    """
    from deid.errors import InputError
    from reid_model.model import MaMI

    state, meta = read_weights_dir(path_dir, "mami")
    try:
        cfg = ModelConfig.from_dict(meta["model_config"])
        num_classes, mfm_dim = int(meta["num_classes"]), int(meta["mfm_dim"])
    except (KeyError, TypeError, ValueError, InputError) as exc:
        raise CheckpointError(
            f"{path_dir}/{META_FILE} holds no valid model config ({exc}); "
            "the checkpoint is from another version or was edited."
        ) from exc
    # the weights come from the file: skip loading the backbone's init checkpoint again
    model = MaMI(cfg, num_classes=num_classes, mfm_dim=mfm_dim, load_init=False)
    report = load_state_strictly(model, state, f"{path_dir}/{WEIGHTS_FILE}", strict=strict)
    if not strict:
        meta.update(report)
    return model.to(device).eval(), cfg, meta
