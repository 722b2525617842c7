"""Late fusion: one model per modality, their out-of-fold scores stacked by a simple model.

Each modality's base model (XGBoost: ``binary:logistic``, ``multi:softprob`` or ``survival:cox``)
is fitted k times on k-1 patient-level folds and scores the fold it did not see; the stacker
learns from those out-of-fold scores, never from scores of rows a base model was trained on
(stacking in-sample scores rewards whichever base model overfits most). The stacker is a
logistic regression (binary), a multinomial logistic regression (multiclass) or a Cox model
(survival, scikit-survival). After stacking, each base model is refitted on all its rows.

Missing modalities: a base model trains on the rows that have its modality; one stacker is
fitted per combination of modalities, on the rows that have all of them, so a row is scored
from the modalities it has and records which. A row's per-modality contribution is the
stacker's coefficient times that modality's score (log-odds, log-probabilities or log hazard).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv
from xgboost import XGBClassifier, XGBRegressor

from pipeline.modeling.imbalance import rebalance

TASKS = ("binary", "multiclass", "survival")


def xgboost_base(task: str, params: dict | None = None, seed: int = 7, classes: int = 2):
    """The per-modality base model of a task."""
    options = {"n_estimators": 200, "max_depth": 3, "learning_rate": 0.05, "subsample": 0.8,
               "colsample_bytree": 0.8, "n_jobs": 2, "random_state": seed, **(params or {})}
    if task == "binary":
        return XGBClassifier(objective="binary:logistic", eval_metric="logloss", **options)
    if task == "multiclass":
        return XGBClassifier(objective="multi:softprob", num_class=classes, eval_metric="mlogloss", **options)
    if task == "survival":
        return XGBRegressor(objective="survival:cox", eval_metric="cox-nloglik", **options)
    raise ValueError(f"unknown task {task!r}; choose from {list(TASKS)}")


def early_stopped_trees(model, x: np.ndarray, target: np.ndarray, groups: np.ndarray, rounds: int,
                        seed: int = 7, prepare=None) -> int:
    """The number of trees for ``model`` (an unfitted XGBoost estimator): fitted on 80 % of the
    patients (``prepare(x, target)`` may rebalance those rows) with the other 20 % as the
    evaluation set, stopping after ``rounds`` rounds without improvement of its eval metric.
    Refitting on all rows with that many trees is the caller's step."""
    fit, val = next(GroupShuffleSplit(1, test_size=0.2, random_state=seed).split(x, target, groups))
    fit_x, fit_y = prepare(x[fit], target[fit]) if prepare else (x[fit], target[fit])
    probe = clone(model).set_params(early_stopping_rounds=rounds)
    probe.fit(fit_x, fit_y, eval_set=[(x[val], target[val])], verbose=False)
    return int(probe.best_iteration) + 1


def event_probability(cox: CoxPHSurvivalAnalysis, x: np.ndarray, horizon: float) -> np.ndarray:
    """``1 - S(horizon | x)`` from a fitted Cox model's Breslow baseline (a step function: the
    survival at the last event time at or before the horizon)."""
    survival = cox.predict_survival_function(x, return_array=True)
    step = np.searchsorted(cox.unique_times_, horizon, side="right") - 1
    return 1.0 - (survival[:, step] if step >= 0 else np.ones(len(x)))


class LateFusion:
    """``fit(features, present, y, groups)`` with ``features``: modality -> ``(rows, d)`` array,
    ``present``: modality -> boolean rows; ``y``: labels (binary / class index) or, for survival,
    ``(time, event)``."""

    def __init__(self, task: str, base_params: dict[str, dict] | None = None, folds: int = 5, seed: int = 7,
                 resample: dict[str, str] | None = None):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose from {list(TASKS)}")
        self.task, self.base_params, self.folds, self.seed = task, base_params or {}, folds, seed
        self.resample = resample or {}   # modality -> SMOTENC / cluster centroids for its base model's rows

    # -- base model scores ---------------------------------------------------------------------

    def _target(self, y, rows):
        if self.task == "survival":
            time, event = (np.asarray(a)[rows] for a in y)
            return np.where(event.astype(bool), time, -time)  # XGBoost's Cox label: negative = censored
        return np.asarray(y)[rows]

    def _score(self, model, x: np.ndarray) -> np.ndarray:
        """A base model's score as stacker input: log-odds, log-probabilities or log hazard."""
        if self.task == "survival":
            return model.predict(x, output_margin=True)[:, None]
        p = np.clip(model.predict_proba(x), 1e-6, 1 - 1e-6)
        return np.log(p[:, 1:] / p[:, :1]) if self.task == "binary" else np.log(p)

    def _fit_base(self, modality: str, x: np.ndarray, target: np.ndarray, groups: np.ndarray):
        """A modality's base model; with ``early_stopping_rounds`` in its parameters, as many
        trees as early stopping on a patient-level inner split chose (see :func:`early_stopped_trees`)."""
        params = dict(self.base_params.get(modality) or {})
        rounds = int(params.pop("early_stopping_rounds", 0) or 0)
        method = self.resample.get(modality, "none")
        prepare = ((lambda a, b: rebalance(a, b, method, seed=self.seed))
                   if method != "none" and self.task != "survival" else None)
        model = xgboost_base(self.task, params, self.seed, self.classes_)
        if rounds > 0 and len(np.unique(groups)) >= 10:
            model.set_params(n_estimators=early_stopped_trees(model, x, target, groups, rounds, self.seed, prepare))
        x, target = prepare(x, target) if prepare else (x, target)
        return model.fit(x, target)

    def _out_of_fold(self, modality, x, rows, y, groups) -> np.ndarray:
        strata = np.asarray(y[1] if self.task == "survival" else y).astype(int)
        scores = np.full((len(strata), self.width_), np.nan)
        splitter = StratifiedGroupKFold(n_splits=self.folds, shuffle=True, random_state=self.seed)
        for train, held in splitter.split(x[rows], strata[rows], np.asarray(groups)[rows]):
            model = self._fit_base(modality, x[rows][train], self._target(y, np.flatnonzero(rows)[train]),
                                   np.asarray(groups)[rows][train])
            scores[np.flatnonzero(rows)[held]] = self._score(model, x[rows][held])
        return scores

    # -- contract -----------------------------------------------------------------------------

    def fit(self, features: dict[str, np.ndarray], present: dict[str, np.ndarray], y, groups=None) -> LateFusion:
        self.modalities_ = list(features)
        n = len(next(iter(features.values())))
        groups = np.arange(n) if groups is None else np.asarray(groups)
        self.classes_ = int(np.max(y)) + 1 if self.task == "multiclass" else 2
        self.width_ = self.classes_ if self.task == "multiclass" else 1
        oof, self.base_ = {}, {}
        for m in self.modalities_:
            rows = np.asarray(present[m], bool)
            oof[m] = self._out_of_fold(m, features[m], rows, y, groups)
            self.base_[m] = self._fit_base(m, features[m][rows], self._target(y, np.flatnonzero(rows)), groups[rows])
        self.stackers_ = {}
        for size in range(1, len(self.modalities_) + 1):
            for subset in combinations(self.modalities_, size):
                rows = np.all([present[m] for m in subset], axis=0) & np.all([~np.isnan(oof[m][:, 0]) for m in subset],
                                                                            axis=0)
                if rows.sum() >= 20:
                    self.stackers_[subset] = self._fit_stacker(np.hstack([oof[m][rows] for m in subset]), y, rows)
        return self

    def _fit_stacker(self, scores: np.ndarray, y, rows):
        if self.task == "survival":
            time, event = (np.asarray(a)[rows] for a in y)
            return CoxPHSurvivalAnalysis(alpha=1e-2).fit(scores, Surv.from_arrays(event.astype(bool), time))
        return LogisticRegression(C=1.0, max_iter=2000).fit(scores, np.asarray(y)[rows])

    def _subset(self, present_row: dict[str, bool]) -> tuple[str, ...]:
        have = tuple(m for m in self.modalities_ if present_row[m])
        usable = [s for s in self.stackers_ if set(s) <= set(have)]
        if not usable:
            raise ValueError(f"no stacker covers a row with modalities {have or 'none'}")
        return max(usable, key=len)  # the most modalities; among equals, the first fitted

    def modalities_used(self, present: dict[str, np.ndarray]) -> list[tuple[str, ...]]:
        n = len(next(iter(present.values())))
        return [self._subset({m: bool(present[m][i]) for m in self.modalities_}) for i in range(n)]

    def predict(self, features: dict[str, np.ndarray], present: dict[str, np.ndarray],
                only: tuple[str, ...] | None = None, horizon: float | None = None) -> np.ndarray:
        """Binary: P(event); multiclass: ``(rows, classes)`` probabilities; survival: log hazard,
        or with ``horizon`` P(event by then). ``only``: score every row from that subset's
        stacker (the single-modality rows of an ablation)."""
        used = self.modalities_used(present) if only is None else [tuple(only)] * len(next(iter(present.values())))
        n = len(used)
        out = np.zeros((n, self.classes_)) if self.task == "multiclass" else np.zeros(n)
        for subset in set(used):
            rows = np.array([u == subset for u in used])
            stacked = np.hstack([self._score(self.base_[m], features[m][rows]) for m in subset])
            stacker = self.stackers_[subset]
            if self.task == "survival" and horizon is not None:
                out[rows] = event_probability(stacker, stacked, horizon)
            elif self.task == "survival":
                out[rows] = stacker.predict(stacked)
            elif self.task == "binary":
                out[rows] = stacker.predict_proba(stacked)[:, 1]
            else:
                out[rows] = stacker.predict_proba(stacked)
        return out

    def contributions(self, features: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> list[dict]:
        """Per row, each used modality's term in the stacker (binary and survival: one number;
        multiclass: the term of each class's logit)."""
        used = self.modalities_used(present)
        out: list[dict] = [{} for _ in used]
        for subset in set(used):
            rows = np.flatnonzero([u == subset for u in used])
            stacker = self.stackers_[subset]
            coef = np.atleast_2d(stacker.coef_)
            start = 0
            for m in subset:
                scores = self._score(self.base_[m], features[m][rows])
                terms = scores @ coef[:, start:start + scores.shape[1]].T
                start += scores.shape[1]
                for i, row in enumerate(rows):
                    out[row][m] = (np.round(terms[i], 4).tolist() if self.task == "multiclass"
                                   else round(float(terms[i].sum()), 4))
        return out
