"""Modality-specific DICOM modules of the five phantom IODs: CR Image, DX (for presentation),
CT Image, MR Image and Ophthalmic Photography 8 Bit Image."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from deid.synth.dicom_common import add_pixels, ds_number, window
from reid_model.phantoms.types import PhantomImage

SOP_CLASS_UIDS: dict[str, str] = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "OP": "1.2.840.10008.5.1.4.1.1.77.1.5.1",
}


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _voi_lut(ds: Dataset, pixels: np.ndarray) -> None:
    centre, width = window(pixels)
    ds.WindowCenter = ds_number(centre)
    ds.WindowWidth = ds_number(width)


def add_radiograph(ds: Dataset, image: PhantomImage, pixels: np.ndarray) -> None:
    """CR Series + CR Image, or DX Series + DX Anatomy Imaged + DX Image + DX Detector."""
    view = image.view_position or "PA"
    spacing = [ds_number(s) for s in image.pixel_spacing_mm]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    # shown in the conventional display: patient's left on the viewer's right, head up
    ds.PatientOrientation = ["L", "F"]
    ds.ViewPosition = view
    ds.KVP = "120"
    ds.ImagerPixelSpacing = spacing
    add_pixels(ds, pixels, image.bits_stored, "MONOCHROME2")
    _voi_lut(ds, pixels)
    if ds.Modality == "CR":
        return
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = "U"  # unpaired body part
    ds.AnatomicRegionSequence = [_code_item(codes.SCT.Chest)]
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.DetectorType = "SCINTILLATOR"
    ds.PositionerType = "COLUMN"
    view_code = codes.SCT.PosteroAnterior if view == "PA" else codes.SCT.AnteroPosterior
    ds.ViewCodeSequence = [_code_item(view_code)]
    ds.PixelSpacing = spacing
    ds.AcquisitionContextSequence = []


def add_volume_slice(ds: Dataset, image: PhantomImage, pixels: np.ndarray, index: int) -> None:
    """Frame of Reference, Image Plane and CT Image or MR Image modules for slice ``index``."""
    assert image.slice_positions_mm is not None
    rows, cols = pixels.shape
    row_mm, col_mm = image.pixel_spacing_mm
    z = float(image.slice_positions_mm[index])
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.PixelSpacing = [ds_number(row_mm), ds_number(col_mm)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    # centre the field of view on the patient axis, x and y in mm
    ds.ImagePositionPatient = [
        ds_number(-cols * col_mm / 2),
        ds_number(-rows * row_mm / 2),
        ds_number(z),
    ]
    ds.SliceLocation = ds_number(z)
    ds.SliceThickness = ds_number(image.slice_thickness_mm or 1.0)
    if ds.Modality == "CT":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = "120"
        ds.ConvolutionKernel = "B60f"
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        # signed storage of HU: the full int16 range, whatever the generator's bits_stored
        add_pixels(ds, pixels, 16, "MONOCHROME2")
        ds.WindowCenter = ["40", "-600"]
        ds.WindowWidth = ["400", "1500"]
        ds.WindowCenterWidthExplanation = ["MEDIASTINUM", "LUNG"]
        return
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = ["SK", "SP"]
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = "500"
    ds.EchoTime = "12"
    ds.EchoTrainLength = 1
    ds.MagneticFieldStrength = "3"
    ds.ImagingFrequency = "123.2"
    ds.SpacingBetweenSlices = ds_number(image.slice_thickness_mm or 1.0)
    add_pixels(ds, pixels, image.bits_stored, "MONOCHROME2")
    _voi_lut(ds, pixels)


def add_fundus(ds: Dataset, image: PhantomImage, pixels: np.ndarray) -> None:
    """Ophthalmic Photography Series/Image, Ocular Region Imaged, acquisition and photographic
    parameters, Multi-frame (one frame) and Enhanced General Equipment modules."""
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ImageLaterality = image.laterality or "R"
    ds.PatientOrientation = ["L", "F"]  # photograph taken facing the patient
    ds.AnatomicRegionSequence = [_code_item(codes.SCT.Retina)]
    ds.AcquisitionDateTime = ds.ContentDate + ds.ContentTime
    ds.LossyImageCompression = "00"
    ds.NumberOfFrames = 1
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.FrameTime = "0"
    # Synchronization module: clock not synchronized; the frame of reference is UTC (PS3.16)
    ds.SynchronizationFrameOfReferenceUID = "1.2.840.10008.15.1.1"
    ds.SynchronizationTrigger = "NO TRIGGER"
    ds.AcquisitionTimeSynchronized = "N"
    ds.PixelSpacing = [ds_number(s) for s in image.pixel_spacing_mm]
    ds.PatientEyeMovementCommanded = "NO"
    ds.HorizontalFieldOfView = 45.0
    ds.RefractiveStateSequence = []
    ds.EmmetropicMagnification = None
    ds.IntraOcularPressure = None
    ds.PupilDilated = "NO"
    ds.AcquisitionDeviceTypeCodeSequence = [_code_item(codes.SCT.FundusCamera)]
    ds.IlluminationTypeCodeSequence = []
    ds.LightPathFilterTypeStackCodeSequence = []
    ds.ImagePathFilterTypeStackCodeSequence = []
    ds.LensesCodeSequence = []
    ds.DetectorType = "CCD"
    ds.AcquisitionContextSequence = []
    add_pixels(ds, pixels, 8, "RGB")
