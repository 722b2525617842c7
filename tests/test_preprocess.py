"""The fitted tabular preprocessing: learned on training rows only, applied unchanged after."""

import numpy as np
import pandas as pd
import pytest

from pipeline.features.preprocess import ClinicalPreprocessor, fit_preprocessor


def frame():
    return pd.DataFrame({
        "lactate": [1.0, 2.0, 3.0, np.nan, 100.0, 2.0, 1.5, 2.5, 3.5, 1.0],      # one outlier, one gap
        "mostly_missing": [np.nan] * 8 + [1.0, 2.0],                              # 80 % missing
        "age": [50.0, 60, 70, 80, 55, 65, 75, 85, 45, 35],
        "sex": ["F", "M", "F", None, "M", "F", "F", "M", "F", "M"],
    })


def test_fit_learns_missingness_imputation_clipping_and_scaling_from_training_rows():
    X = frame()
    pre = ClinicalPreprocessor(max_missing=0.2, clip_sd=1.0, scaling="zscore").fit(X)
    assert pre.dropped_for_missingness_ == ["mostly_missing"]
    assert list(pre.get_feature_names_out()) == ["lactate", "age", "sex_F", "sex_M"]
    assert pre.means_["lactate"] == pytest.approx(np.nanmean(X["lactate"]))
    assert pre.modes_["sex"] == "F"
    out = pre.transform(X)
    assert not np.isnan(out).any()
    # the 100 mmol/L outlier is clipped at mean + 1 SD before scaling, so it is no longer extreme
    assert out[4, 0] == pytest.approx(out[:, 0].max())
    assert out[4, 0] < 3
    assert out[3, 2:].tolist() == [1.0, 0.0]          # missing sex imputed with the training mode


def test_transform_never_refits_and_unknown_categories_are_all_zero():
    X = frame()
    pre = ClinicalPreprocessor(scaling="minmax").fit(X)
    new = pd.DataFrame({"lactate": [1000.0], "mostly_missing": [5.0], "age": [200.0], "sex": ["X"]})
    first = pre.transform(new)
    assert first[0, 2:].tolist() == [0.0, 0.0]        # an unseen category
    assert pre.transform(X).min() >= -1e-12 and pre.transform(X).max() <= 1 + 1e-12
    assert np.array_equal(pre.transform(new), first)  # stateless transform
    with pytest.raises(ValueError, match="scaling"):
        ClinicalPreprocessor(scaling="robust").fit(X)


def test_selection_keeps_informative_columns_and_skips_copies():
    rng = np.random.default_rng(0)
    n = 400
    signal = rng.normal(size=n)
    y = (signal + rng.normal(0, 0.5, n) > 0).astype(int)
    X = pd.DataFrame({"signal": signal, "copy_of_signal": signal * 2 + 1, "weak": signal * 0.6 + rng.normal(size=n),
                      **{f"noise_{i}": rng.normal(size=n) for i in range(10)}})
    pre = ClinicalPreprocessor(select_top_k=2, redundancy=0.95).fit(X, y)
    kept = list(pre.get_feature_names_out())
    assert len(kept) == 2 and ("signal" in kept) != ("copy_of_signal" in kept)   # never both copies
    assert "weak" in kept
    assert pre.transform(X).shape == (n, 2)


def test_training_rows_with_too_many_gaps_are_dropped_before_fitting():
    X = pd.DataFrame({"a": [1.0, 2, 3, 4, np.nan, 6, 7, 8, 9, 10], "b": [1.0, 2, 3, 4, np.nan, 6, 7, 8, 9, np.nan],
                      "c": [1.0] * 10})
    y = np.array([0, 1] * 5)
    pre, rows = fit_preprocessor({"max_missing": 0.2, "max_stay_missing": 0.2}, X, y)
    # row 4 misses 2 of the 3 kept features, row 9 one of them: both above 20 %
    assert rows.tolist() == [True] * 4 + [False] + [True] * 4 + [False]
    assert pre.means_["a"] == pytest.approx(np.mean([1, 2, 3, 4, 6, 7, 8, 9]))   # learned without them


def test_iterative_imputation_recovers_a_value_its_neighbours_predict():
    rng = np.random.default_rng(4)
    n = 1500
    creatinine = rng.lognormal(0, 0.4, n)
    frame = pd.DataFrame({"creatinine": creatinine, "bun": 15 * creatinine + rng.normal(0, 1, n),
                          "age": rng.normal(65, 10, n)})
    hidden = rng.uniform(size=n) < 0.15
    truth = frame.loc[hidden, "bun"].to_numpy()
    frame.loc[hidden, "bun"] = np.nan
    errors = {}
    for method in ("mean", "iterative"):
        pre = ClinicalPreprocessor(imputation=method, clip_sd=None, max_missing=0.5).fit(frame)
        scaled = pre.transform(frame)[hidden, list(pre.get_feature_names_out()).index("bun")]
        imputed = scaled * pre.scale_["bun"] + pre.center_["bun"]
        errors[method] = np.abs(imputed - truth).mean()
    assert errors["iterative"] < 0.3 * errors["mean"], errors
    again = ClinicalPreprocessor(imputation="iterative", clip_sd=None, max_missing=0.5).fit(frame)
    np.testing.assert_allclose(again.transform(frame), pre.transform(frame))  # seeded: reproducible
    with pytest.raises(ValueError, match="imputation must be one of"):
        ClinicalPreprocessor(imputation="knn").fit(frame)
