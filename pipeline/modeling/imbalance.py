"""Class rebalancing of a training matrix with imbalanced-learn, for the models whose papers
rebalance their EHR data: SMOTENC over-sampling (new minority rows interpolated between
neighbours; categorical columns — one-hot indicators here — take a neighbour's value, so they
stay 0/1), cluster-centroid under-sampling (each majority class replaced by k-means centroids, or with
one-hot columns by the real rows nearest them),
or both in one pipeline (the PE thrombolysis paper's hybrid: minorities over-sampled part of the
way, then the majority under-sampled). Applied to the preprocessed training rows only (inside
each fold), never to validation or scoring rows.
"""

from __future__ import annotations

import numpy as np
from imblearn.over_sampling import SMOTE, SMOTENC
from imblearn.under_sampling import ClusterCentroids
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.cluster import KMeans

RESAMPLERS = ("none", "smotenc", "cluster_centroids")
# ``resample`` in a spec: a method name, or the steps of a hybrid pipeline in order, each a name
# or ``{name: ratio}`` (e.g. ``[{smotenc: 0.5}, {cluster_centroids: 1.0}]``, the PE paper's)
Resample = str | list


def binary_columns(matrix: np.ndarray) -> list[int]:
    """Columns holding only 0 and 1 (one-hot categories, missingness indicators)."""
    return [j for j in range(matrix.shape[1]) if np.isin(np.unique(matrix[:, j]), (0.0, 1.0)).all()]


def resampling_steps(resample: Resample) -> list[tuple[str, float]]:
    """``resample`` as ``[(method, ratio), ...]``; a clear error for anything else.

    ``smotenc`` with ratio r grows every class smaller than r x the largest class to that size;
    ``cluster_centroids`` with ratio r shrinks every class larger than the smallest class / r to
    that size (r = 1: equal classes, what a bare method name does).

    >>> resampling_steps([{"smotenc": 0.5}, "cluster_centroids"])
    [('smotenc', 0.5), ('cluster_centroids', 1.0)]
    """
    steps = [resample] if isinstance(resample, str) else list(resample) if isinstance(resample, (list, tuple)) else None
    if steps is None:
        raise ValueError("neither a method nor a list of steps")
    out = []
    for step in steps:
        name, ratio = next(iter(step.items())) if isinstance(step, dict) and len(step) == 1 else (step, 1.0)
        if name not in RESAMPLERS or (name == "none" and len(steps) > 1):
            raise ValueError(f"unknown resampling {name!r}; choose from {list(RESAMPLERS)}, or a list of "
                             f"smotenc / cluster_centroids steps, each optionally {{method: ratio}}")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ValueError(f"the ratio of {name} must be a number in (0, 1], not {ratio!r}")
        if name != "none":
            out.append((name, float(ratio)))
    return out


def rebalance(matrix: np.ndarray, y: np.ndarray, method: Resample, *, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix, y)`` through each step of ``method`` in turn (:func:`resampling_steps`).

    A pipeline whose over-sampling cannot run (a class of a single row has no neighbour) leaves
    the rows as they are: its under-sampling alone would shrink every class to that one row."""
    resampled, target = matrix, y
    for name, ratio in resampling_steps(method):
        if name == "smotenc" and _smallest_class(target) < 2:
            return matrix, y
        resampled, target = _resampled(resampled, target, name, ratio, seed)
    return resampled, target


def _smallest_class(y: np.ndarray) -> int:
    counts = np.bincount(np.asarray(y, dtype=int))
    return int(counts[counts > 0].min()) if counts.any() else 0


def _resampled(matrix: np.ndarray, y: np.ndarray, method: str, ratio: float,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(np.asarray(y, dtype=int))
    present = counts[counts > 0]
    if len(present) < 2:
        return matrix, y
    if method == "smotenc":
        neighbours = int(min(5, present.min() - 1))
        if neighbours < 1:
            return matrix, y  # a class with a single row has no neighbour to interpolate towards
        goal = int(np.ceil(ratio * present.max()))
        strategy = "auto" if ratio == 1.0 else {k: goal for k, c in enumerate(counts) if 0 < c < goal}
        if not strategy:
            return matrix, y
        categorical = binary_columns(matrix)
        if categorical and len(categorical) < matrix.shape[1]:
            sampler = SMOTENC(categorical_features=categorical, k_neighbors=neighbours, random_state=seed,
                              sampling_strategy=strategy)
        else:
            sampler = SMOTE(k_neighbors=neighbours, random_state=seed, sampling_strategy=strategy)
    else:
        goal = int(np.floor(present.min() / ratio))
        strategy = "auto" if ratio == 1.0 else {k: goal for k, c in enumerate(counts) if c > goal}
        if not strategy:
            return matrix, y
        # with one-hot columns each centroid is replaced by its nearest real row ("hard" voting), so
        # that categories stay 0/1 (a centroid of one-hot rows is a fraction of each category)
        voting = "hard" if binary_columns(matrix) else "soft"
        sampler = ClusterCentroids(estimator=KMeans(n_init=3, random_state=seed), random_state=seed,
                                   sampling_strategy=strategy, voting=voting)
    resampled, target = sampler.fit_resample(matrix, y)
    return np.asarray(resampled, dtype=float), np.asarray(target)


class Rebalanced(ClassifierMixin, BaseEstimator):
    """A classifier fitted on rebalanced rows and scoring rows as they are: what a calibration
    or cross-validation wrapper fits in each fold, so that the held-out fold stays unresampled."""

    def __init__(self, estimator=None, method: Resample = "none", seed: int = 7):
        self.estimator = estimator
        self.method = method
        self.seed = seed

    def fit(self, matrix: np.ndarray, y: np.ndarray) -> Rebalanced:
        self.estimator_ = clone(self.estimator).fit(*rebalance(matrix, y, self.method, seed=self.seed))
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        return self.estimator_.predict_proba(matrix)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.estimator_.predict(matrix)
