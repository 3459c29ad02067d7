"""Domain exceptions. Every message states what went wrong and what to do about it.

The CLI turns these into ``click.ClickException`` (exit code 2); library code raises them.
"""

from __future__ import annotations


class DeidError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(DeidError):
    """A user-supplied path, file or option cannot be used as given."""


class UnreadableFileError(DeidError):
    """One file could not be decoded; runs record it as skipped instead of stopping."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class CheckpointError(DeidError):
    """A model checkpoint is missing, corrupt or does not match the code."""


class OutputError(DeidError):
    """The output location is unsafe or already holds data that would be overwritten."""
