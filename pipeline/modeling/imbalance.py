"""Class rebalancing of a training matrix with imbalanced-learn, for the models whose papers
rebalance their EHR data: SMOTENC over-sampling (new minority rows interpolated between
neighbours; categorical columns — one-hot indicators here — take a neighbour's value, so they
stay 0/1) or cluster-centroid under-sampling (each majority class replaced by k-means centroids).
Applied to the preprocessed training rows only, never to validation or scoring rows.
"""

from __future__ import annotations

import numpy as np
from imblearn.over_sampling import SMOTE, SMOTENC
from imblearn.under_sampling import ClusterCentroids
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.cluster import KMeans

RESAMPLERS = ("none", "smotenc", "cluster_centroids")


def binary_columns(matrix: np.ndarray) -> list[int]:
    """Columns holding only 0 and 1 (one-hot categories, missingness indicators)."""
    return [j for j in range(matrix.shape[1]) if np.isin(np.unique(matrix[:, j]), (0.0, 1.0)).all()]


def rebalance(matrix: np.ndarray, y: np.ndarray, method: str, *, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix, y)`` resampled to equal class counts by ``method`` (one of ``RESAMPLERS``)."""
    if method not in RESAMPLERS:
        raise ValueError(f"unknown resampling {method!r}; choose from {list(RESAMPLERS)}")
    counts = np.bincount(np.asarray(y, dtype=int))
    if method == "none" or len(counts[counts > 0]) < 2:
        return matrix, y
    if method == "smotenc":
        neighbours = int(min(5, counts[counts > 0].min() - 1))
        if neighbours < 1:
            return matrix, y  # a class with a single row has no neighbour to interpolate towards
        categorical = binary_columns(matrix)
        if categorical and len(categorical) < matrix.shape[1]:
            sampler = SMOTENC(categorical_features=categorical, k_neighbors=neighbours, random_state=seed)
        else:
            sampler = SMOTE(k_neighbors=neighbours, random_state=seed)
    else:
        sampler = ClusterCentroids(estimator=KMeans(n_init=3, random_state=seed), random_state=seed)
    resampled, target = sampler.fit_resample(matrix, y)
    return np.asarray(resampled, dtype=float), np.asarray(target)


class Rebalanced(ClassifierMixin, BaseEstimator):
    """A classifier fitted on rebalanced rows and scoring rows as they are: what a calibration
    or cross-validation wrapper fits in each fold, so that the held-out fold stays unresampled."""

    def __init__(self, estimator=None, method: str = "none", seed: int = 7):
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
