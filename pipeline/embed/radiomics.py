"""Radiomics of a CT's tumour region with PyRadiomics (IBSI-compliant; the ``pyradiomics-bhklab``
build, as PyRadiomics 3.1.0 does not build on Python 3.11): first-order statistics, 2-D shape and
the GLCM, GLRLM and GLSZM texture families, per image, inside its tumour mask.

A CT image record is one DICOM instance, so features are computed on its slice (PyRadiomics'
``force2D``) and a stay's slices are pooled like any image modality. The mask is a label image
beside the DICOM file, ``<file>.mask.nrrd`` (any format SimpleITK reads, on the image's pixel
grid, tumour voxels = ``label``); an image without one is a failure row with that reason, never
scored from the whole image. An image's content hash covers its mask, so a corrected mask is
extracted again. Results are cached like embeddings, keyed by the content hash and the
extractor's id (which names the PyRadiomics version and settings).

Which features a model reads is selected on the training split (:func:`select_features`) and
kept with the version, so a night computes the same columns.
"""

from __future__ import annotations

import json
import logging
import warnings
from functools import cache, partial
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from pipeline.embed.records import RecordError, mask_path, read_dicom

FEATURE_CLASSES = ("firstorder", "shape2D", "glcm", "glrlm", "glszm")
DEFAULT_SETTINGS = {"binWidth": 25, "label": 1, "force2D": True, "force2Ddimension": 0,
                    "minimumROIDimensions": 2, "minimumROISize": 20}
MAX_MASK_BYTES = 64 << 20


def feature_names(classes: tuple[str, ...] = FEATURE_CLASSES) -> list[str]:
    """The extractor's output columns, in a fixed order (deprecated features left out)."""
    from radiomics import getFeatureClasses

    found = getFeatureClasses()
    return [f"original_{c}_{name}" for c in classes
            for name, deprecated in sorted(found[c].getFeatureNames().items()) if not deprecated]


def dicom_image(path: Path) -> sitk.Image:
    """A DICOM slice in its modality units (Hounsfield units for CT) with its pixel spacing."""
    if not path.is_file():
        raise RecordError("DICOM file not found")
    try:
        ds = read_dicom(path)
        pixels = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
    except (InvalidDicomError, EOFError, OSError, ValueError, AttributeError) as error:
        raise RecordError(f"not a readable DICOM image ({type(error).__name__})") from error
    if pixels.ndim != 2:
        raise RecordError(f"radiomics reads one greyscale slice per record, not an array of shape {pixels.shape}")
    image = sitk.GetImageFromArray(pixels[None])
    rows, columns = (float(v) for v in ds.get("PixelSpacing", [1.0, 1.0]))
    image.SetSpacing((columns, rows, float(ds.get("SliceThickness", 1.0) or 1.0)))
    return image


def read_mask(path: Path, image: sitk.Image) -> sitk.Image:
    if not path.is_file() or path.is_symlink():
        raise RecordError("no tumour mask beside the image (<file>.mask.nrrd)")
    if path.stat().st_size > MAX_MASK_BYTES:
        raise RecordError("tumour mask file is larger than a mask can be")
    try:
        mask = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise RecordError("tumour mask is not a readable label image") from error
    if mask.GetSize() != image.GetSize():
        raise RecordError(f"tumour mask grid {mask.GetSize()} is not the image's {image.GetSize()}")
    mask = sitk.Cast(mask, sitk.sitkUInt8)
    mask.CopyInformation(image)
    return mask


@cache
def _quiet_radiomics() -> None:
    """PyRadiomics logs a handful of notices per image otherwise; set once per process."""
    import radiomics

    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.WARNING)


def extract(image: sitk.Image, mask: sitk.Image, settings: dict, classes: tuple[str, ...] = FEATURE_CLASSES
            ) -> dict[str, float]:
    """PyRadiomics' features of the masked region, by name."""
    from radiomics import featureextractor

    _quiet_radiomics()
    extractor = featureextractor.RadiomicsFeatureExtractor(additionalInfo=False, **settings)
    extractor.disableAllFeatures()
    for name in classes:
        extractor.enableFeatureClassByName(name)
    try:
        result = extractor.execute(image, mask, label=settings.get("label", 1))
    except (ValueError, RuntimeError) as error:   # an empty or too small region, a label not in the mask
        raise RecordError(f"radiomics cannot use the tumour region ({type(error).__name__}: empty or too small "
                          f"for its settings)") from error
    return {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}


def measure_ct(path: Path, settings: dict, names: tuple[str, ...]) -> np.ndarray:
    """One record's feature vector (``names`` order; NaN where a feature is not defined)."""
    image = dicom_image(path)
    values = extract(image, read_mask(mask_path(path), image), settings)
    return np.array([values.get(n, np.nan) for n in names], dtype=np.float32)


class RadiomicsExtractor:
    """Measures a CT record's tumour region. It has a signal encoder's ``reader`` / ``encode``
    shape, so :func:`pipeline.embed.modalities.embed_records` caches its vectors and runs it in the
    guarded decoder processes; ``selected_columns`` (set by training) is what a model reads."""

    modality = "images"
    step = "CT radiomics"
    missing_values = True

    def __init__(self, options: dict | None = None):
        self.settings = {**DEFAULT_SETTINGS, **((options or {}).get("radiomics") or {})}
        self.names = tuple(feature_names())
        self.selected_columns: list[int] | None = None
        self.trained_with = self.encoder_id   # a night refuses to measure with another PyRadiomics

    @property
    def encoder_id(self) -> str:
        import radiomics

        return f"radiomics:pyradiomics={radiomics.__version__}:{json.dumps(self.settings, sort_keys=True)}"

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def selected_names(self) -> list[str]:
        return [self.names[i] for i in (range(self.dim) if self.selected_columns is None else self.selected_columns)]

    @property
    def reader(self):
        return partial(measure_ct, settings=self.settings, names=self.names)

    def read(self, path: Path) -> np.ndarray:
        return self.reader(path)

    def encode(self, measured: torch.Tensor, device: str, batch_size: int = 64) -> np.ndarray:
        return measured.numpy()   # the measurement is made in ``read``

    def select(self, matrix: np.ndarray) -> np.ndarray:
        return matrix if self.selected_columns is None else matrix[..., self.selected_columns]

    def fit_selection(self, matrix: np.ndarray, present: np.ndarray, y: np.ndarray, task: str, k: int,
                      seed: int = 7) -> list[str]:
        """Choose the columns ``select`` keeps, on the training rows in ``present``
        (:func:`select_features`); the names kept."""
        self.selected_columns = select_features(matrix, present, y, task, k, seed=seed)
        return self.selected_names


def select_features(matrix: np.ndarray, present: np.ndarray, y: np.ndarray, task: str, k: int,
                    redundancy: float = 0.9, seed: int = 7) -> list[int]:
    """Columns to keep, chosen on the given (training) rows that have the modality: each feature
    ranked by its univariate association with the outcome (survival: |Harrell's C - 0.5|;
    otherwise mutual information), the best ``k`` kept greedily, skipping one correlated above
    ``redundancy`` with a column already kept; features undefined in over 20 % of the rows or
    constant are never kept."""
    from pipeline.features.preprocess import greedy_select

    rows = np.asarray(present, bool)
    x, target = matrix[rows].astype(np.float64), y[rows]
    if len(x) < 10:
        raise ValueError(f"radiomics selection needs the training split's measured images; {len(x)} examples "
                         f"have one (are the tumour masks beside the images?)")
    with warnings.catch_warnings():   # an all-NaN column: not usable, and no mean
        warnings.simplefilter("ignore", RuntimeWarning)
        means, spread = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
    usable = (np.isnan(x).mean(axis=0) <= 0.2) & (spread > 0)
    x = np.where(usable, np.where(np.isnan(x), means, x), 0.0)
    if task == "survival":
        from sksurv.metrics import concordance_index_censored

        event, time = target[:, 1].astype(bool), target[:, 0].astype(float)
        score = np.array([abs(concordance_index_censored(event, time, x[:, j])[0] - 0.5) if usable[j] else 0.0
                          for j in range(x.shape[1])])
    else:
        from sklearn.feature_selection import mutual_info_classif

        score = mutual_info_classif(x, target.astype(int), random_state=seed)
    kept = greedy_select(x, np.where(usable, score, -np.inf), k, redundancy)
    if not kept:
        raise ValueError("no radiomics feature is defined in 80 % of the training images and varies between them")
    return kept
