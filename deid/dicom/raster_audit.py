"""Metadata audit of non-DICOM images (PNG, JPEG, TIFF): text chunks, comments and EXIF.

Exported screenshots and conversions often carry what the DICOM header held: a PNG ``tEXt``
chunk with the patient name, a JPEG comment with the accession number, EXIF dates, author and
device serial numbers. The audit names what is present (keys and tag names, never values).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from PIL import ExifTags, Image, UnidentifiedImageError

from deid.errors import UnreadableFileError

# EXIF tags that identify a person, a place, a device or a moment.
IDENTIFYING_EXIF = frozenset(
    {
        "Artist",
        "Copyright",
        "ImageDescription",
        "UserComment",
        "XPAuthor",
        "XPComment",
        "XPSubject",
        "XPTitle",
        "XPKeywords",
        "DateTime",
        "DateTimeOriginal",
        "DateTimeDigitized",
        "GPSInfo",
        "BodySerialNumber",
        "CameraOwnerName",
        "LensSerialNumber",
        "ImageUniqueID",
        "HostComputer",
        "DocumentName",
        "PageName",
    }
)
# Info keys Pillow fills from the file structure itself, not from text the producer wrote.
_STRUCTURAL_INFO = frozenset(
    {
        "dpi",
        "gamma",
        "transparency",
        "jfif",
        "jfif_version",
        "jfif_unit",
        "jfif_density",
        "adobe",
        "adobe_transform",
        "progressive",
        "progression",
        "interlace",
        "compression",
        "icc_profile",
        "exif",
        "aspect",
        "srgb",
        "chromaticity",
        "duration",
        "loop",
        "background",
    }
)


@dataclass
class RasterFindings:
    """Metadata findings of one PNG/JPEG/TIFF file.

    Attributes
    ----------
    format : str
        Pillow's format name ("PNG", "JPEG", "TIFF").
    text_keys : list[str]
        Keys of text chunks and comments ("Comment", PNG tEXt/iTXt/zTXt keywords), sorted.
    exif_tags : list[str]
        Names of all EXIF tags present, sorted.
    identifying_exif : list[str]
        The EXIF tags among them that may identify (see :data:`IDENTIFYING_EXIF`).
    """

    format: str
    text_keys: list[str] = field(default_factory=list)
    exif_tags: list[str] = field(default_factory=list)
    identifying_exif: list[str] = field(default_factory=list)

    @property
    def has_phi_risk(self) -> bool:
        """True when free text or identifying EXIF is present."""
        return bool(self.text_keys or self.identifying_exif)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["has_phi_risk"] = self.has_phi_risk
        return out


def audit_raster_metadata(path: str | os.PathLike[str]) -> RasterFindings:
    """List text chunks, comments and EXIF tags of an image file, without their values.

    Raises
    ------
    UnreadableFileError
        If Pillow cannot identify the file as an image.
    """
    try:
        with Image.open(path) as image:
            image_format = image.format or "unknown"
            text = dict(getattr(image, "text", {}) or {})  # PNG tEXt/iTXt/zTXt
            info_keys = {k for k in image.info if isinstance(k, str)}
            exif = image.getexif()
            names = {ExifTags.TAGS.get(t, f"0x{t:04X}") for t in exif}  # GPSInfo included
            names.update(ExifTags.TAGS.get(t, f"0x{t:04X}") for t in exif.get_ifd(0x8769))
    except (UnidentifiedImageError, OSError) as exc:
        raise UnreadableFileError(str(path), f"not a readable image ({exc})") from exc
    names.discard("ExifOffset")  # the pointer to the Exif IFD, not content
    text_keys = set(text) | {k for k in info_keys - _STRUCTURAL_INFO if k not in text}
    return RasterFindings(
        format=image_format,
        text_keys=sorted(text_keys),
        exif_tags=sorted(names),
        identifying_exif=sorted(names & IDENTIFYING_EXIF),
    )
