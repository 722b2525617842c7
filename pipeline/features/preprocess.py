"""The fitted tabular preprocessing of the sepsis mortality research model, as one scikit-learn
transformer: drop features missing in more than ``max_missing`` of training stays, impute
(numbers: the training mean, or ``imputation: iterative`` — a MissForest-style imputer that
models each feature from the others with random forests, in rounds; categories: the mode), clip at ``clip_sd`` standard deviations, scale
(z-score or min-max), one-hot encode categories, and keep the ``select_top_k`` columns ranked
by a weighted mix of mutual information and correlation with the label, skipping near-copies.

Everything is learned in ``fit`` on the training split and stored with the model version;
``transform`` applies it unchanged at scoring.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (makes IterativeImputer importable)
from sklearn.feature_selection import mutual_info_classif
from sklearn.impute import IterativeImputer

SCALINGS = ("zscore", "minmax")
IMPUTATIONS = ("mean", "iterative")
log = logging.getLogger(__name__)


class ClinicalPreprocessor(TransformerMixin, BaseEstimator):
    def __init__(self, max_missing: float = 0.2, clip_sd: float | None = 3.0, scaling: str = "zscore",
                 select_top_k: int | None = None, mi_weight: float = 0.5, redundancy: float = 0.95,
                 imputation: str = "mean", random_state: int = 7):
        self.max_missing = max_missing
        self.imputation = imputation
        self.clip_sd = clip_sd
        self.scaling = scaling
        self.select_top_k = select_top_k
        self.mi_weight = mi_weight
        self.redundancy = redundancy
        self.random_state = random_state

    def _split(self, X: pd.DataFrame) -> tuple[list[str], list[str]]:
        categorical = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        return [c for c in X.columns if c not in categorical], categorical

    def fit(self, X: pd.DataFrame, y=None) -> ClinicalPreprocessor:
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, not {self.scaling!r}")
        if self.imputation not in IMPUTATIONS:
            raise ValueError(f"imputation must be one of {IMPUTATIONS}, not {self.imputation!r}")
        numeric, categorical = self._split(X)
        missing_share = X[numeric].isna().mean()
        self.numeric_ = [c for c in numeric if missing_share[c] <= self.max_missing]
        self.dropped_for_missingness_ = [c for c in numeric if c not in self.numeric_]
        values = X[self.numeric_].astype("float64")
        self.means_ = values.mean().fillna(0.0)
        self.imputer_ = None
        if self.imputation == "iterative" and self.numeric_:
            array = values.to_numpy(copy=True)
            self.imputer_ = iterative_imputer(self.random_state).fit(array)
            filled = pd.DataFrame(self.imputer_.transform(array), columns=self.numeric_, index=X.index)
        else:
            filled = values.fillna(self.means_)
        if self.clip_sd is not None:
            sd = filled.std(ddof=0).fillna(0.0)
            self.lower_, self.upper_ = self.means_ - self.clip_sd * sd, self.means_ + self.clip_sd * sd
            filled = filled.clip(self.lower_, self.upper_, axis=1)
        if self.scaling == "zscore":
            self.center_, scale = filled.mean(), filled.std(ddof=0)
        else:
            self.center_, scale = filled.min(), filled.max() - filled.min()
        self.scale_ = scale.where(scale > 1e-12, 1.0)
        self.categories_ = {c: sorted(X[c].dropna().astype(str).unique()) for c in categorical}
        self.modes_ = {c: (X[c].dropna().astype(str).mode().iloc[0] if X[c].notna().any() else "unknown")
                       for c in categorical}
        self.all_names_ = self.numeric_ + [f"{c}_{v}" for c, vs in self.categories_.items() for v in vs]
        self.selected_ = np.arange(len(self.all_names_))
        if self.select_top_k is not None and y is not None and self.select_top_k < len(self.all_names_):
            self.selected_ = self._select(self._full_transform(X), np.asarray(y))
        self.feature_names_out_ = np.array(self.all_names_, dtype=object)[self.selected_]
        return self

    def _full_transform(self, X: pd.DataFrame) -> np.ndarray:
        values = X[self.numeric_].to_numpy(dtype="float64", copy=True)
        if getattr(self, "imputer_", None) is not None:
            values = self.imputer_.transform(values)
        else:
            values = np.where(np.isnan(values), self.means_.to_numpy(), values)
        if self.clip_sd is not None:
            values = np.clip(values, self.lower_.to_numpy(), self.upper_.to_numpy())
        parts = [(values - self.center_.to_numpy()) / self.scale_.to_numpy()]
        for column, categories in self.categories_.items():
            observed = X[column].astype(object).where(X[column].notna(), self.modes_[column]).astype(str).to_numpy()
            parts.append((observed[:, None] == np.array(categories, dtype=object)[None, :]).astype(float))
        return np.hstack(parts) if parts else np.zeros((len(X), 0))

    def _select(self, matrix: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Rank by ``mi_weight * MI + (1 - mi_weight) * |corr|`` (each scaled to [0, 1]); greedily
        keep the best, skipping a column correlated above ``redundancy`` with one already kept."""
        mi = mutual_info_classif(matrix, y, random_state=self.random_state)
        centred = matrix - matrix.mean(axis=0)
        norms = np.sqrt((centred ** 2).sum(axis=0))
        target = (y - y.mean()) / (np.sqrt(((y - y.mean()) ** 2).sum()) or 1.0)
        corr = np.abs(centred.T @ target / np.where(norms > 0, norms, 1.0))
        score = self.mi_weight * mi / (mi.max() or 1.0) + (1 - self.mi_weight) * corr / (corr.max() or 1.0)
        return np.array(greedy_select(matrix, score, self.select_top_k, self.redundancy))

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self._full_transform(X)[:, self.selected_]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return self.feature_names_out_

    def row_missing_share(self, X: pd.DataFrame) -> np.ndarray:
        """Per row, the share of the kept numeric features that are missing."""
        if not self.numeric_:
            return np.zeros(len(X))
        return X[self.numeric_].isna().mean(axis=1).to_numpy()


def greedy_select(matrix: np.ndarray, score: np.ndarray, k: int | None, redundancy: float) -> list[int]:
    """Columns by falling ``score``, up to ``k``, skipping a constant column, one without a finite
    score, and one correlated above ``redundancy`` with a column already kept (sorted indices)."""
    centred = matrix - matrix.mean(axis=0)
    norms = np.sqrt((centred ** 2).sum(axis=0))
    unit = centred / np.where(norms > 0, norms, 1.0)
    kept: list[int] = []
    for index in np.argsort(-score, kind="stable"):
        if norms[index] == 0 or not np.isfinite(score[index]):
            continue
        if kept and np.max(np.abs(unit[:, kept].T @ unit[:, index])) > redundancy:
            continue
        kept.append(int(index))
        if len(kept) == k:
            break
    return sorted(kept)


def iterative_imputer(seed: int) -> IterativeImputer:
    """MissForest-style: each feature with missing values regressed on the others by a random
    forest, round by round, starting from the means."""
    forest = RandomForestRegressor(n_estimators=20, max_depth=8, min_samples_leaf=3, n_jobs=1, random_state=seed)
    return IterativeImputer(estimator=forest, max_iter=5, initial_strategy="mean", keep_empty_features=True,
                            skip_complete=True,  # features complete in training are mean-filled if ever missing
                            random_state=seed)


def fit_preprocessor(config: dict, X: pd.DataFrame, y: np.ndarray) -> tuple[ClinicalPreprocessor, np.ndarray]:
    """Fit, drop training rows missing more than ``max_stay_missing`` of the kept features, refit.

    Returns the preprocessor and the boolean mask of the training rows it kept.
    """
    options = dict(config)
    max_stay_missing = options.pop("max_stay_missing", None)
    preprocessor = ClinicalPreprocessor(**options).fit(X, y)
    rows = np.ones(len(X), dtype=bool)
    if max_stay_missing is not None:
        rows = preprocessor.row_missing_share(X) <= max_stay_missing
        if rows.sum() < 0.5 * len(X):
            log.warning("max_stay_missing=%s would drop %d of %d training rows; keeping them all instead",
                        max_stay_missing, int((~rows).sum()), len(X))
            rows = np.ones(len(X), dtype=bool)
        preprocessor = ClinicalPreprocessor(**options).fit(X[rows], y[rows])
    return preprocessor, rows
