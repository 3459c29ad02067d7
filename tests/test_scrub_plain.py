"""PNG/JPEG/TIFF metadata stripping: metadata gone, pixels kept exactly."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin, TiffImagePlugin

from deid.errors import UnreadableFileError
from deid.io.image_read import image_metadata
from deid.scrub.plain_images import metadata_keys, strip_metadata

SECRET = "Jane Q. Secretperson MRN 9931"


def _exif(secret: str) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = secret  # ImageDescription
    exif[0x013B] = secret  # Artist
    return exif.tobytes()


def _pixels(mode: str) -> Image.Image:
    rng = np.random.default_rng(0)
    if mode == "RGB":
        return Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (24, 32), dtype=np.uint16))
    return Image.fromarray(rng.integers(0, 256, (24, 32), dtype=np.uint8))


def _png(mode: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", SECRET)
    info.add_itxt("Comment", SECRET, zip=True)
    buffer = io.BytesIO()
    _pixels(mode).save(buffer, format="PNG", pnginfo=info, exif=_exif(SECRET))
    return buffer.getvalue()


def _decoded(data: bytes) -> tuple[str, np.ndarray]:
    with Image.open(io.BytesIO(data)) as image:
        return image.mode, np.asarray(image)


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16"])
def test_png_text_and_exif_removed_pixels_identical(mode: str) -> None:
    data = _png(mode)
    assert SECRET.encode() in data and len(metadata_keys(data)) >= 3  # the test input has PHI
    clean = strip_metadata(data, "png")
    assert b"Secretperson" not in clean and b"9931" not in clean
    with Image.open(io.BytesIO(clean)) as image:
        assert image_metadata(image) == {}
    assert _decoded(clean)[0] == _decoded(data)[0]
    np.testing.assert_array_equal(_decoded(clean)[1], _decoded(data)[1])


def test_palette_png_keeps_palette_and_transparency() -> None:
    image = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) % 4, mode="L").convert("P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    image.info["transparency"] = 3
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", SECRET)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, transparency=3)
    clean = strip_metadata(buffer.getvalue(), "png")
    with Image.open(io.BytesIO(clean)) as out:
        assert out.mode == "P" and out.info.get("transparency") == 3
        np.testing.assert_array_equal(
            np.asarray(out.convert("RGBA")), np.asarray(image.convert("RGBA"))
        )
    assert b"Secretperson" not in clean


def test_multipage_tiff_tags_removed_pages_identical() -> None:
    pages = [_pixels("L"), _pixels("L").transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[270] = SECRET  # ImageDescription
    tags[315] = SECRET  # Artist
    buffer = io.BytesIO()
    pages[0].save(
        buffer,
        format="TIFF",
        tiffinfo=tags,
        save_all=True,
        append_images=pages[1:],
        compression="tiff_lzw",
    )
    data = buffer.getvalue()
    assert SECRET.encode() in data
    clean = strip_metadata(data, "tiff")
    assert b"Secretperson" not in clean
    plain = io.BytesIO()
    pages[0].save(
        plain, format="TIFF", save_all=True, append_images=pages[1:], compression="tiff_lzw"
    )
    # only the structural tags of a TIFF written without any metadata remain
    assert metadata_keys(clean) == metadata_keys(plain.getvalue())
    assert "exif:Artist" in metadata_keys(data) and "exif:Artist" not in metadata_keys(clean)
    with Image.open(io.BytesIO(clean)) as out:
        assert out.n_frames == 2
        assert out.info.get("compression") == "tiff_lzw"
        for index, page in enumerate(pages):
            out.seek(index)
            np.testing.assert_array_equal(np.asarray(out), np.asarray(page))


def _scan(data: bytes) -> bytes:
    """Bytes from the first start-of-scan marker to the end-of-image marker."""
    return data[data.index(b"\xff\xda") : data.rindex(b"\xff\xd9") + 2]


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_segments_dropped_without_reencoding(progressive: bool) -> None:
    buffer = io.BytesIO()
    _pixels("RGB").save(
        buffer,
        format="JPEG",
        quality=90,
        exif=_exif(SECRET),
        comment=SECRET.encode(),
        progressive=progressive,
        restart_marker_rows=1,
    )
    data = buffer.getvalue() + b"trailing " + SECRET.encode()  # bytes after EOI
    assert data.count(b"Secretperson") >= 3
    clean = strip_metadata(data, "jpeg")
    assert b"Secretperson" not in clean and b"9931" not in clean
    assert _scan(clean) == _scan(buffer.getvalue())  # entropy-coded data copied unchanged
    np.testing.assert_array_equal(_decoded(clean)[1], _decoded(data)[1])
    with Image.open(io.BytesIO(clean)) as image:
        assert image_metadata(image) == {}


def test_jpeg_drops_jfif_thumbnail_and_keeps_adobe_marker() -> None:
    from deid.scrub.plain_images import _kept_segment

    jfif = b"JFIF\x00\x01\x02\x00\x00\x48\x00\x48\x02\x02" + b"\x10" * 12
    assert _kept_segment(0xE0, jfif) == jfif[:12] + b"\x00\x00"
    adobe = b"Adobe\x00\x64\x00\x00\x00\x00\x01"
    assert _kept_segment(0xEE, adobe) == adobe
    assert _kept_segment(0xE1, b"Exif\x00\x00" + SECRET.encode()) is None
    assert _kept_segment(0xFE, SECRET.encode()) is None
    assert _kept_segment(0xDB, b"\x00" * 65) == b"\x00" * 65  # tables are kept


def test_broken_files_raise_unreadable() -> None:
    with pytest.raises(UnreadableFileError, match="JPEG metadata could not be removed"):
        strip_metadata(b"\xff\xd8\xff\xe1\x00\x10Exif", "jpeg", "x.jpg")
    with pytest.raises(UnreadableFileError, match="PNG"):
        strip_metadata(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "png", "x.png")


def test_release_of_plain_images_gets_keyed_names(tmp_path: Path) -> None:
    import nibabel as nib

    from deid.scrub import scrub_release

    release = tmp_path / "Doe_Jane_1961"
    release.mkdir()
    buffer = io.BytesIO()
    _pixels("RGB").save(buffer, format="JPEG", exif=_exif(SECRET))
    (release / "Doe_Jane_fundus.jpg").write_bytes(buffer.getvalue())
    _pixels("L").save(release / "Doe_Jane_scan.tif", tiffinfo={270: SECRET})
    (release / "Doe_Jane_xray.png").write_bytes(_png("L"))
    volume = nib.Nifti1Image(np.arange(48, dtype=np.int16).reshape(4, 4, 3), np.eye(4))
    volume.header["descrip"] = SECRET.encode()
    volume.header.extensions.append(nib.nifti1.Nifti1Extension(6, SECRET.encode()))
    nib.save(volume, release / "Doe.nii.gz")
    nib.save(volume, release / "Doe_pair.img")  # a .hdr/.img pair: not copied
    (release / "notes.txt").write_text(SECRET)
    (release / "empty.png").write_bytes(b"")
    out = tmp_path / "safe"
    summary = scrub_release(release, out)
    assert summary.counts == {"skipped": 3, "written": 4}
    reasons = {p.input: p.reason for p in summary.problems}
    assert (
        reasons["Doe_pair.hdr"]
        == "NIfTI .hdr/.img pairs are not copied; convert the pair to a single .nii file"
    )
    assert reasons["notes.txt"] == "not a recognised image format" and reasons["empty.png"]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(written) == 5 and "manifest.json" in written
    assert sorted("".join(Path(p).suffixes) for p in written if p != "manifest.json") == [
        ".jpg",
        ".nii.gz",
        ".png",
        ".tif",
    ]
    (nifti,) = [out / p for p in written if p.endswith(".nii.gz")]
    assert SECRET.encode() not in gzip.decompress(nifti.read_bytes())
    copy = nib.load(nifti)
    assert copy.header["descrip"].item() == b"" and len(copy.header.extensions) == 0
    np.testing.assert_array_equal(np.asanyarray(copy.dataobj), np.asanyarray(volume.dataobj))
    for relative in written:
        assert "DOE" not in relative.upper() and "JANE" not in relative.upper()
        assert b"Secretperson" not in (out / relative).read_bytes()
    manifest = (out / "manifest.json").read_text()
    assert "Doe" not in manifest and "notes" not in manifest


@pytest.mark.parametrize("version", [1, 2])
def test_nifti_text_and_extensions_removed_voxels_identical(version: int) -> None:
    import nibabel as nib

    from deid.scrub.nifti_header import strip_nifti

    kind = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    image = kind(np.arange(60, dtype=np.int16).reshape(3, 4, 5), np.diag([2.0, 2.0, 3.0, 1.0]))
    image.header["descrip"] = b"Doe Jane 1961"
    image.header["aux_file"] = b"doe.txt"
    image.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"Patient Doe, MRN 4471"))
    data = image.to_bytes()
    clean, removed = strip_nifti(data)
    assert removed == 3 and b"Doe" not in clean and b"4471" not in clean
    before, after = kind.from_bytes(data), kind.from_bytes(clean)
    assert clean[-120:] == data[-120:]  # voxel bytes copied as they were
    np.testing.assert_array_equal(after.get_fdata(), before.get_fdata())
    np.testing.assert_array_equal(after.affine, before.affine)
