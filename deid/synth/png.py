"""Phantom images as PNG, the way research exports often look: 16-bit grey for radiographs, CT
and MR, 8-bit RGB for fundus, one PNG per slice in a folder for volumes, PHI in the file name
and in tEXt chunks.

Grey levels: radiograph and MR values are shifted left to fill 16 bits (``v << (16 -
bits_stored)``, lossless); CT stores ``HU + 1024`` clipped to ``[0, 65535]`` (air = 24 on the
usual -1000 scale), so a reader recovers HU by subtracting 1024, as the ``RescaleIntercept``
text chunk says.
"""

from __future__ import annotations

import io
from pathlib import PurePosixPath

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from deid.synth.burn_in import burned_pixels
from deid.synth.checks import check_image
from deid.synth.layout import ReleaseFile, png_stem
from deid.synth.phi import VisitPHI
from reid_model.phantoms.types import PhantomImage

CT_OFFSET = 1024


def png_levels(image: PhantomImage, pixels: np.ndarray) -> np.ndarray:
    """Map stored pixels of ``image`` to PNG sample values (uint16 grey or uint8 RGB)."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype.kind == "i":  # CT Hounsfield units
        return np.clip(pixels.astype(np.int32) + CT_OFFSET, 0, 65535).astype(np.uint16)
    shift = max(0, 16 - image.bits_stored)
    return (pixels.astype(np.uint32) << shift).astype(np.uint16)


def _text_chunks(image: PhantomImage, phi: VisitPHI) -> PngInfo:
    info = PngInfo()
    patient = phi.patient
    info.add_text("PatientName", patient.name.display)
    info.add_text("PatientID", patient.patient_id)
    info.add_text("BirthDate", patient.birth_date.isoformat())
    info.add_text("StudyDate", phi.study_datetime.isoformat(sep=" "))
    info.add_text("Accession", phi.accession)
    info.add_text("Institution", phi.site.institution)
    if image.pixels.dtype.kind == "i":
        info.add_text("RescaleIntercept", str(-CT_OFFSET))
    return info


def _encode(plane: np.ndarray, info: PngInfo) -> bytes:
    buffer = io.BytesIO()
    # level 3: about 3x faster than the default 6 for 2-4% larger files
    Image.fromarray(plane).save(buffer, format="PNG", pnginfo=info, compress_level=3)
    return buffer.getvalue()


def png_files(image: PhantomImage, phi: VisitPHI) -> list[ReleaseFile]:
    """Return the PNG file(s) of ``image`` with paths relative to the release folder.

    Parameters
    ----------
    image
        One visit of one phantom patient; burned-in text is drawn when ``burn_in_phi``.
    phi
        Fake identity used in the names, tEXt chunks and burned-in text.

    Returns
    -------
    list of ReleaseFile
        One file for 2D images; for volumes ``<stem>/slice_<nnn>.png`` per slice.

    Raises
    ------
    InputError
        If the image breaks the layout of its dataset (see :func:`deid.synth.checks.check_image`).
    """
    check_image(image)
    levels = png_levels(image, burned_pixels(image, phi))
    info = _text_chunks(image, phi)
    stem = png_stem(phi, image)
    if not image.is_volume:
        return [ReleaseFile(PurePosixPath(f"{stem}.png"), _encode(levels, info))]
    return [
        ReleaseFile(PurePosixPath(stem) / f"slice_{i:03d}.png", _encode(plane, info), i)
        for i, plane in enumerate(levels)
    ]
