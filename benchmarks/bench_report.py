"""Pieces every benchmark script shares: device sync, the machine and command lines, output.

Scripts run as ``python benchmarks/<name>.py``, so this folder is on their import path.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so a timer measures it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU architecture and torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces this run, as it goes into the results."""
    args = list(argv) if argv is not None else sys.argv[1:]
    return " ".join(["python", f"benchmarks/{script}", *args]).strip()


def publish(text: str, append: Path | None) -> None:
    """Print the markdown record and, when asked, append it to a results file."""
    print(text)
    if append is not None:
        with Path(append).open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")
