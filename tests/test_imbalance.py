"""Rebalancing with imbalanced-learn: equal classes, one-hot columns kept 0/1, and the minority
class actually better found by a model trained on the rebalanced rows."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from pipeline.modeling.imbalance import binary_columns, rebalance, resampling_steps


def skewed(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.08).astype(int)
    numeric = rng.normal(size=(n, 3)) + y[:, None] * np.array([1.2, 0.0, 0.6])
    unit = rng.integers(0, 3, size=n)
    onehot = np.eye(3)[unit]
    return np.hstack([numeric, onehot]), y


def test_smotenc_balances_the_classes_and_keeps_one_hot_columns_binary():
    matrix, y = skewed()
    assert binary_columns(matrix) == [3, 4, 5]
    resampled, target = rebalance(matrix, y, "smotenc")
    assert np.bincount(target).tolist() == [int((y == 0).sum())] * 2
    assert np.isin(resampled[:, 3:], (0.0, 1.0)).all()
    np.testing.assert_array_equal(resampled[: len(y)], matrix)  # the original rows come first, unchanged


def test_cluster_centroids_shrink_the_majority_to_the_minority():
    matrix, y = skewed()
    resampled, target = rebalance(matrix, y, "cluster_centroids")
    assert np.bincount(target).tolist() == [int(y.sum())] * 2


def test_rebalanced_training_finds_more_of_the_minority_at_the_same_threshold():
    matrix, y = skewed(4000, seed=1)
    test, y_test = skewed(2000, seed=2)
    plain = LogisticRegression().fit(matrix, y)
    balanced = LogisticRegression().fit(*rebalance(matrix, y, "smotenc"))
    recall = lambda model: (model.predict(test)[y_test == 1] == 1).mean()  # noqa: E731
    assert recall(balanced) > recall(plain) + 0.3


def test_unknown_method_and_degenerate_inputs():
    matrix, y = skewed()
    with pytest.raises(ValueError, match="unknown resampling 'adasyn'"):
        rebalance(matrix, y, "adasyn")
    one_class = np.zeros(len(y), int)
    assert rebalance(matrix, one_class, "smotenc")[0] is matrix


def three_classes(counts=(300, 60, 20), seed=3):
    """Classes 0, 1, 2 of ``counts`` rows, shifted apart, with a one-hot unit column block."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), counts)
    numeric = rng.normal(size=(len(y), 3)) + y[:, None] * 0.8
    return np.hstack([numeric, np.eye(3)[rng.integers(0, 3, size=len(y))]]), y


@pytest.mark.parametrize("steps, expected", [
    ([{"smotenc": 0.5}, {"cluster_centroids": 1.0}], [150, 150, 150]),   # minorities up to half, then equal
    ([{"smotenc": 0.5}, {"cluster_centroids": 0.8}], [187, 150, 150]),   # the majority down to 150 / 0.8
    (["smotenc", "cluster_centroids"], [300, 300, 300]),                 # bare names: equal after the first
    ([{"cluster_centroids": 0.25}], [80, 60, 20]),                       # only classes above 20 / 0.25 shrink
])
def test_the_hybrid_pipeline_reaches_its_target_class_counts(steps, expected):
    matrix, y = three_classes()
    resampled, target = rebalance(matrix, y, steps)
    assert np.bincount(target).tolist() == expected
    assert np.isin(resampled[:, 3:], (0.0, 1.0)).all()   # SMOTENC keeps the one-hot block binary


def test_a_hybrid_step_or_ratio_that_is_not_one_names_what_is_wrong():
    matrix, y = three_classes()
    with pytest.raises(ValueError, match="unknown resampling 'adasyn'"):
        rebalance(matrix, y, [{"smotenc": 0.5}, "adasyn"])
    with pytest.raises(ValueError, match="ratio of smotenc must be a number in"):
        rebalance(matrix, y, [{"smotenc": 1.5}])
    assert resampling_steps("none") == [] and rebalance(matrix, y, "none")[0] is matrix


def test_a_hybrid_pipeline_whose_over_sampling_cannot_run_leaves_the_rows_as_they_are():
    """A class of one row has no neighbour to interpolate towards: under-sampling alone would
    cut every class to that one row, so nothing is resampled."""
    matrix, y = three_classes((300, 60, 1))
    resampled, target = rebalance(matrix, y, [{"smotenc": 0.5}, {"cluster_centroids": 1.0}])
    assert resampled is matrix and target is y
