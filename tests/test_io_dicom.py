"""DICOM decoding (rescale, MONOCHROME1, windows, multi-frame, series) and the DICOM writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from deid.errors import InputError
from deid.io import Record, ReleaseItem, Window, discover, load, write_like
from deid.io.display import apply_window

SERIES = "1.2.826.0.1.3680043.8.498.1"


def make_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    modality: str = "CT",
    slope: float | None = None,
    intercept: float | None = None,
    position: tuple[float, float, float] | None = None,
    window: tuple[float, float] | None = None,
    series: str = SERIES,
    syntax: str = ExplicitVRLittleEndian,
) -> Path:
    """Write a small, valid DICOM file holding ``stored`` values."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.PatientID, ds.PatientName, ds.Modality = "PAT-1", "Doe^Jane", modality
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), series
    ds.BurnedInAnnotation = "NO"
    bits = bits_stored or stored.dtype.itemsize * 8
    pydicom.pixels.set_pixel_data(ds, stored, photometric, bits)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0.0
    if position is not None:
        ds.ImagePositionPatient = list(position)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)
    return path


def read(path: Path) -> Record:
    return load(ReleaseItem(path.name, (path,), "dicom"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_rescale_gives_modality_units_and_metadata(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    stored = rng.integers(-1024, 2047, (6, 5)).astype(np.int16)
    record = read(
        make_dicom(tmp_path / "ct.dcm", stored, bits_stored=12, slope=2.0, intercept=-1024)
    )
    assert record.pixels.dtype == np.float32
    np.testing.assert_array_equal(record.pixels, stored * 2.0 - 1024)
    assert (record.modality, record.source_dtype, record.bits_stored) == ("CT", np.int16, 12)
    assert record.metadata["PatientID"] == "PAT-1"
    assert record.metadata["SeriesInstanceUID"] == SERIES
    assert record.metadata["BurnedInAnnotation"] == "NO"
    assert not record.is_volume
    # CT without a window is shown with the soft-tissue window (40/400): 40 HU is mid-grey.
    shown = record.display(np.array([[40.0, -1000.0, 1000.0]], dtype=np.float32))
    np.testing.assert_allclose(shown[0], [0.5 + 0.5 / 399, 0.0, 1.0], atol=1e-6)


def test_monochrome1_is_inverted_and_window_follows(tmp_path: Path) -> None:
    stored = np.array([[0, 100], [4000, 4095]], dtype=np.uint16)
    path = make_dicom(
        tmp_path / "cr.dcm",
        stored,
        photometric="MONOCHROME1",
        bits_stored=12,
        modality="CR",
        window=(2048, 4096),
    )
    record = read(path)
    np.testing.assert_array_equal(record.pixels, 4095 - stored.astype(np.float32))
    assert record.photometric == "MONOCHROME1"
    # Stored 0 is white in MONOCHROME1, so it must display brightest.
    shown = record.display()
    expected = 1.0 - apply_window(stored, Window(center=2048, width=4096))
    np.testing.assert_allclose(shown, expected, atol=1e-6)
    assert shown[0, 0] > shown[1, 1]


def test_window_functions_hand_values() -> None:
    linear = Window(center=100.0, width=51.0)  # PS3.3 C.11.2.1.2: ramps over [75, 125)
    np.testing.assert_allclose(apply_window(np.array([74.5, 99.5, 125.0]), linear), [0.0, 0.5, 1.0])
    exact = Window(center=0.0, width=10.0, function="LINEAR_EXACT")
    np.testing.assert_allclose(apply_window(np.array([-5.0, 0.0, 2.5]), exact), [0.0, 0.5, 0.75])
    sigmoid = Window(center=10.0, width=4.0, function="SIGMOID")
    np.testing.assert_allclose(
        apply_window(np.array([10.0, 11.0]), sigmoid), [0.5, 1 / (1 + np.exp(-1))], rtol=1e-6
    )
    lut = Window(lut_first=-2, lut=np.array([0.0, 255.0, 510.0]), lut_bits=9)
    np.testing.assert_allclose(
        apply_window(np.array([-5.0, -1.0, 9.0]), lut), [0.0, 255 / 511, 510 / 511], rtol=1e-6
    )


def test_series_slices_are_ordered_by_position(tmp_path: Path, rng: np.random.Generator) -> None:
    slices = {z: rng.integers(0, 4095, (4, 3)).astype(np.uint16) for z in (10.0, -5.0, 2.5)}
    for name, z in zip(("b.dcm", "a.dcm", "c.dcm"), slices, strict=True):
        make_dicom(tmp_path / name, slices[z], bits_stored=12, position=(0.0, 0.0, z))
    found = discover(tmp_path)
    assert found.skipped == [] and len(found.items) == 1
    item = found.items[0]
    assert [p.name for p in item.paths] == ["a.dcm", "c.dcm", "b.dcm"]  # z = -5, 2.5, 10
    assert item.key == "a.dcm#series"
    record = load(item)
    assert record.pixels.shape == (3, 4, 3) and record.is_volume
    for index, z in enumerate(sorted(slices)):
        np.testing.assert_array_equal(record.pixels[index], slices[z])
    # Given the files in another order, load sorts them the same way.
    shuffled = load(ReleaseItem(item.key, item.paths[::-1], "dicom"))
    assert shuffled.paths == item.paths
    np.testing.assert_array_equal(shuffled.pixels, record.pixels)
    assert shuffled.metadata["ImagePositionPatient"] == [0.0, 0.0, -5.0]


def test_views_without_positions_stay_separate(tmp_path: Path) -> None:
    image = np.zeros((4, 4), dtype=np.uint16)
    make_dicom(tmp_path / "pa.dcm", image, modality="CR")
    make_dicom(tmp_path / "lat.dcm", image, modality="CR")
    assert sorted(item.key for item in discover(tmp_path).items) == ["lat.dcm", "pa.dcm"]


def test_multiframe_file_is_a_volume(tmp_path: Path, rng: np.random.Generator) -> None:
    stored = rng.integers(0, 255, (3, 4, 5)).astype(np.uint8)
    record = read(make_dicom(tmp_path / "mf.dcm", stored, modality="XA"))
    assert record.pixels.shape == (3, 4, 5) and record.is_volume
    np.testing.assert_array_equal(record.pixels, stored)
    write_like(record, record.pixels + 1, [tmp_path / "out.dcm"])
    np.testing.assert_array_equal(read(tmp_path / "out.dcm").pixels, np.minimum(stored + 1.0, 255))


@pytest.mark.parametrize(
    ("dtype", "bits", "photometric", "slope", "intercept"),
    [
        (np.uint8, 8, "MONOCHROME2", None, None),
        (np.int16, 16, "MONOCHROME2", 0.5, -100.0),
        (np.uint16, 12, "MONOCHROME1", None, None),
        (np.int16, 12, "MONOCHROME2", 1.0, -1024.0),
    ],
)
def test_dicom_round_trip(
    tmp_path: Path,
    rng: np.random.Generator,
    dtype: type,
    bits: int,
    photometric: str,
    slope: float | None,
    intercept: float | None,
) -> None:
    info = np.iinfo(dtype)
    low, high = (0, 2**bits - 1) if info.min == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    stored = rng.integers(low, high + 1, (5, 6)).astype(dtype)
    source = make_dicom(
        tmp_path / "in.dcm",
        stored,
        photometric=photometric,
        bits_stored=bits,
        slope=slope,
        intercept=intercept,
    )
    record = read(source)
    out = tmp_path / "out" / "in.dcm"
    write_like(record, record.pixels, [out])
    again = read(out)
    np.testing.assert_array_equal(again.pixels, record.pixels)
    written = pydicom.dcmread(out)
    assert written.PhotometricInterpretation == photometric
    assert (written.BitsStored, written.PixelRepresentation) == (bits, int(info.min < 0))
    np.testing.assert_array_equal(written.pixel_array, stored)
    # Out-of-range values are clipped to the stored range, not wrapped around.
    write_like(record, np.full_like(record.pixels, 1e9), [out])
    assert pydicom.dcmread(out).pixel_array.max() in (high, low)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_input_is_written_uncompressed(
    tmp_path: Path, rng: np.random.Generator, syntax: str
) -> None:
    stored = rng.integers(0, 4095, (2, 40, 40)).astype(np.uint16)  # J2K needs >= 32 px
    record = read(make_dicom(tmp_path / "in.dcm", stored, bits_stored=12, syntax=syntax))
    assert record.metadata["TransferSyntaxUID"] == syntax
    write_like(record, record.pixels, [tmp_path / "out.dcm"])
    written = pydicom.dcmread(tmp_path / "out.dcm")
    assert written.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert not written["PixelData"].is_undefined_length  # not encapsulated
    np.testing.assert_array_equal(written.pixel_array, stored)


def test_series_round_trip_writes_one_file_per_slice(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    for z in (1.0, 2.0, 3.0):
        stored = rng.integers(0, 4095, (4, 4)).astype(np.uint16)
        make_dicom(tmp_path / f"s{z:.0f}.dcm", stored, bits_stored=12, position=(0, 0, z))
    record = load(discover(tmp_path).items[0])
    outs = [tmp_path / "out" / p.name for p in record.paths]
    write_like(record, record.pixels, outs)
    again = load(discover(tmp_path / "out").items[0])
    np.testing.assert_array_equal(again.pixels, record.pixels)
    with pytest.raises(InputError, match="one output path per source"):
        write_like(record, record.pixels, outs[:2])
    with pytest.raises(InputError, match="shape"):
        write_like(record, record.pixels[:2], outs)


@pytest.mark.parametrize(
    "name", ["MR_small_bigendian.dcm", "SC_rgb_rle.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm"]
)
def test_real_files_round_trip(tmp_path: Path, name: str) -> None:
    source = Path(get_testdata_file(name))
    before = source.read_bytes()
    record = read(source)
    write_like(record, record.pixels, [tmp_path / name])
    np.testing.assert_array_equal(read(tmp_path / name).pixels, record.pixels)
    written = pydicom.dcmread(tmp_path / name)
    assert written.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    if "jpeg" in name:  # baseline JPEG is lossy: the output must keep saying so
        assert written.LossyImageCompression == "01"
    assert source.read_bytes() == before


def _bare_image(rows: int, cols: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = "OT", generate_uid()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def test_one_bit_image_stays_bit_packed(tmp_path: Path, rng: np.random.Generator) -> None:
    bits = rng.integers(0, 2, (4, 8)).astype(np.uint8)
    ds = _bare_image(4, 8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    ds.PixelData = pydicom.pixels.pack_bits(bits)
    ds.save_as(tmp_path / "mask.dcm", enforce_file_format=True)
    record = read(tmp_path / "mask.dcm")
    np.testing.assert_array_equal(record.pixels, bits)
    write_like(record, 1.0 - record.pixels, [tmp_path / "out.dcm"])
    written = pydicom.dcmread(tmp_path / "out.dcm")
    assert written.BitsAllocated == 1 and len(written.PixelData) == 4
    np.testing.assert_array_equal(written.pixel_array, 1 - bits)


def test_float_pixel_data_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    values = rng.normal(size=(3, 5)).astype(np.float32)
    ds = _bare_image(3, 5)
    ds.BitsAllocated = 32
    ds.FloatPixelData = values.tobytes()
    ds.save_as(tmp_path / "map.dcm", enforce_file_format=True)
    record = read(tmp_path / "map.dcm")
    assert record.source_dtype == np.float32
    np.testing.assert_array_equal(record.pixels, values)
    write_like(record, record.pixels * 3, [tmp_path / "out.dcm"])
    np.testing.assert_array_equal(read(tmp_path / "out.dcm").pixels, values * 3)
