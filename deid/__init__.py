"""mami-deid: re-identification risk audit and de-identification of medical images."""

__version__ = "0.1.0"
