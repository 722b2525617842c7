"""CT radiomics (``pipeline/embed/radiomics.py``): PyRadiomics' own documented baseline reproduced
through Vigil's extraction path, a real CT slice with a tumour mask, the failure reasons of a
missing or mismatched mask, the mask in the image's content hash, and the training-split selection."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from pipeline.embed.imaging import image_sha256
from pipeline.embed.radiomics import (RadiomicsExtractor, dicom_image, extract, mask_path, measure_ct,
                                      select_features)
from pipeline.embed.records import RecordError
from pipeline.synthetic.imaging import write_mask

CASE = Path(__file__).parent / "data" / "pyradiomics"


def baseline() -> tuple[dict, dict[str, float]]:
    """PyRadiomics' breast1 baseline: the settings it was computed with and every feature value."""
    with open(CASE / "breast1_baseline.csv") as handle:
        values = {row["feature"]: float(row["breast1"]) for row in csv.DictReader(handle)}
    settings = {"binWidth": 25, "label": 1, "voxelArrayShift": 2000, "minimumROIDimensions": 1, "padDistance": 5,
                "distances": [1], "force2D": False}
    return settings, values


def test_the_extraction_reproduces_pyradiomics_own_baseline_for_its_breast1_case():
    settings, expected = baseline()
    image = sitk.ReadImage(str(CASE / "breast1_image.nrrd"))
    mask = sitk.ReadImage(str(CASE / "breast1_label.nrrd"))
    found = extract(image, mask, settings, classes=("firstorder", "shape", "glcm", "glrlm", "glszm"))
    compared = {name: (found[name], value) for name, value in expected.items() if name in found}
    assert len(compared) == len(expected) == 88 and {n.split("_")[1] for n in compared} == {"firstorder", "shape", "glcm", "glrlm",
                                                                            "glszm"}
    off = {name: pair for name, pair in compared.items() if not np.isclose(*pair, rtol=1e-6, atol=1e-9)}
    assert not off, off


@pytest.fixture
def real_ct(tmp_path, shared_data) -> Path:
    """The real CT slice of ../shared/data/dicom with a disk-shaped tumour mask beside it."""
    path = tmp_path / "ct" / "CT_small.dcm"
    path.parent.mkdir()
    shutil.copy(shared_data / "dicom" / "CT_small.dcm", path)
    rows, columns = pydicom.dcmread(path).pixel_array.shape
    y, x = np.mgrid[0:rows, 0:columns]
    write_mask(path, (x - columns / 2) ** 2 + (y - rows / 2) ** 2 < (rows / 4) ** 2)
    return path


def test_a_real_ct_slice_runs_through_with_its_mask(real_ct):
    extractor = RadiomicsExtractor()
    vector = extractor.read(real_ct)
    assert vector.shape == (extractor.dim,) and np.isfinite(vector).mean() > 0.95
    named = dict(zip(extractor.names, vector))
    ds = pydicom.dcmread(real_ct)
    hounsfield = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    inside = hounsfield[sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path(real_ct))))[0] > 0]
    # first-order values checked against the pixels themselves, in Hounsfield units
    assert named["original_firstorder_Mean"] == pytest.approx(inside.mean(), rel=1e-5)
    assert (named["original_firstorder_Minimum"], named["original_firstorder_Maximum"]) == \
        pytest.approx((inside.min(), inside.max()))
    spacing = [float(v) for v in ds.PixelSpacing]
    assert named["original_shape2D_PixelSurface"] == pytest.approx(inside.size * spacing[0] * spacing[1], rel=1e-6)
    assert all(named[n] > 0 for n in ("original_glcm_JointEnergy", "original_glrlm_RunPercentage",
                                      "original_glszm_ZonePercentage"))


def test_a_missing_or_mismatched_mask_is_a_reason_not_a_whole_image_measurement(real_ct, tmp_path):
    extractor = RadiomicsExtractor()
    mask_path(real_ct).unlink()
    with pytest.raises(RecordError, match="no tumour mask"):
        extractor.read(real_ct)
    write_mask(real_ct, np.ones((8, 8), bool))
    with pytest.raises(RecordError, match="is not the image's"):
        extractor.read(real_ct)
    rows, columns = pydicom.dcmread(real_ct).pixel_array.shape
    write_mask(real_ct, np.zeros((rows, columns), bool))          # an empty region
    with pytest.raises(RecordError, match="radiomics cannot use the tumour region"):
        measure_ct(real_ct, extractor.settings, extractor.names)
    with pytest.raises(RecordError, match="not a readable DICOM"):
        dicom_image(mask_path(real_ct))


def test_an_images_content_hash_covers_its_mask(real_ct):
    before = image_sha256(real_ct)
    rows, columns = pydicom.dcmread(real_ct).pixel_array.shape
    write_mask(real_ct, np.eye(rows, columns, dtype=bool) | np.eye(rows, columns, k=1, dtype=bool))
    assert image_sha256(real_ct) != before                        # a corrected mask is measured again


def test_selection_on_the_training_rows_keeps_the_informative_distinct_columns():
    rng = np.random.default_rng(3)
    n = 300
    signal = rng.normal(size=n)
    days = np.exp(1 - signal + rng.normal(0, 0.3, n))
    y = np.column_stack([days, rng.uniform(size=n) < 0.7])
    noise = rng.normal(size=(n, 3))
    sparse = np.where(rng.uniform(size=n) < 0.5, np.nan, signal)
    matrix = np.column_stack([noise[:, 0], signal, signal * 2 + 1, noise[:, 1], np.ones(n), sparse, noise[:, 2]])
    present = np.ones(n, bool)
    kept = select_features(matrix, present, y, "survival", k=2)
    assert 1 in kept and 2 not in kept and 4 not in kept and 5 not in kept   # the copy, the constant, the sparse one
    assert len(kept) == 2
    labels = (signal > 0).astype(int)
    assert select_features(matrix, present, labels, "binary", k=1) in ([1], [2])


def test_a_stay_feature_is_the_mean_of_the_slices_that_define_it():
    import pandas as pd

    from pipeline.embed.modalities import stay_vectors

    when = pd.Timestamp("2026-03-01 10:00")
    records = pd.DataFrame({"stay_id": [1, 1, 2], "time": when, "arrival_time": when, "content_hash": ["a", "b", "c"]})
    vectors = {"a": np.array([1.0, np.nan], np.float32), "b": np.array([3.0, 5.0], np.float32),
               "c": np.array([np.nan, np.nan], np.float32)}
    keys = pd.DataFrame({"stay_id": [1, 2], "prediction_time": when + pd.Timedelta(hours=1)})
    matrix, present = stay_vectors(records, vectors, keys, 2)
    assert present.tolist() == [True, True]
    np.testing.assert_array_equal(matrix[0], [2.0, 5.0])
    assert np.isnan(matrix[1]).all()
