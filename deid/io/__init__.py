"""Release I/O: find images by content, decode them into Records, write new pixels back."""

from deid.io.discover import Discovery, discover, iter_records, load, load_or_skip
from deid.io.record import Encoding, Kind, Record, ReleaseItem, Skipped, Window
from deid.io.sniff import sniff
from deid.io.writers import write_like

__all__ = [
    "Discovery",
    "Encoding",
    "Kind",
    "Record",
    "ReleaseItem",
    "Skipped",
    "Window",
    "discover",
    "iter_records",
    "load",
    "load_or_skip",
    "sniff",
    "write_like",
]
