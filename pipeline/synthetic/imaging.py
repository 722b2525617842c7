"""Synthetic chest radiographs written as real DICOM (CR, 12-bit, with rescale and window
tags; some MONOCHROME1) whose lung opacities grow with the imaging risk factor."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pipeline.embed.records import mask_path

SIZE = 128
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def synth_chest(rng: np.random.Generator, opacity: float) -> np.ndarray:
    """A 128x128 12-bit frontal chest image; ``opacity`` >= 0 scales consolidation."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    body = ((x - 0.5) / 0.46) ** 2 + ((y - 0.55) / 0.5) ** 2 < 1
    image = np.where(body, 1500.0, 200.0)
    for cx in (0.32, 0.68):
        lung = ((x - cx) / 0.15) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1
        image[lung] = 550.0
    image[(np.abs(x - 0.5) < 0.06) & body] = 2400.0
    for _ in range(int(rng.poisson(1 + 2 * opacity))):
        cx = rng.choice([0.32, 0.68]) + rng.normal(0, 0.05)
        cy = rng.uniform(0.35, 0.7)
        radius = 0.04 + 0.03 * opacity * rng.uniform(0.5, 1.5)
        blob = np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius ** 2)))
        image += 900.0 * min(opacity, 2.5) * blob
    image += rng.normal(0, 60, size=image.shape)
    return np.clip(image, 0, 4095).astype(np.uint16)


def organ_region() -> np.ndarray:
    """The ellipse :func:`synth_texture` fills with tissue: a CT's tumour mask."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    return ((x - 0.5) / 0.4) ** 2 + ((y - 0.5) / 0.35) ** 2 < 1


def write_mask(image_path: Path, region: np.ndarray) -> None:
    """A label image beside the DICOM file (``<file>.mask.nrrd``, 1 = tumour), on its pixel grid."""
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(region.astype(np.uint8)[None]),
                    str(mask_path(image_path)), useCompression=True)


def synth_texture(rng: np.random.Generator, level: float) -> np.ndarray:
    """A 128x128 12-bit speckled organ or tissue patch (liver ultrasound, CT, pathology stain):
    brightness and the number of dense foci rise with ``level`` (echogenicity, lesion burden,
    mitotic figures)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    organ = organ_region()
    image = np.where(organ, 900.0 + 350.0 * np.tanh(level), 150.0)
    for _ in range(int(rng.poisson(2 + 3 * max(level, 0.0)))):
        cx, cy = rng.uniform(0.25, 0.75, 2)
        radius = rng.uniform(0.02, 0.05)
        image += 700.0 * np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius ** 2))) * organ
    image *= rng.gamma(8.0, 1 / 8.0, size=image.shape)  # multiplicative speckle
    return np.clip(image, 0, 4095).astype(np.uint16)


def write_dicom(path: Path, pixels: np.ndarray, *, patient_id: str, study_uid_seed: str, when: datetime,
                monochrome1: bool = False, modality: str = "CR") -> None:
    """Write ``pixels`` (uint16, 12 bits used) as a CR image with standard display tags."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[study_uid_seed, "sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[study_uid_seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[study_uid_seed, "series"])
    ds.PatientID = patient_id
    ds.Modality = modality
    ds.ViewPosition = "AP"
    ds.StudyDate = when.strftime("%Y%m%d")
    ds.StudyTime = when.strftime("%H%M%S")
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope = 1
    ds.RescaleIntercept = 0
    ds.WindowCenter = 4095 - 1400 if monochrome1 else 1400  # the window is on stored values
    ds.WindowWidth = 2800
    stored = (4095 - pixels) if monochrome1 else pixels
    ds.PixelData = stored.astype("<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
