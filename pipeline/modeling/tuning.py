"""Hyper-parameter grid search by patient-level stratified k-fold cross-validation on the
training rows only (the held-out patients never take part), scored by the spec's promotion
metric; ties go to the first grid point (the spec's own order)."""

from __future__ import annotations

import itertools
import logging

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from pipeline.modeling.estimators import make_candidate
from pipeline.modeling.inputs import ModelInputs
from pipeline.modeling.metrics import primary_metric, task_metrics

log = logging.getLogger(__name__)


def with_point(kind: str, inputs: tuple[str, ...], params: dict, point: dict) -> dict:
    """A candidate's parameters with one grid point applied: a late-fusion point sets every base
    model's parameter (over what the spec gave each), any other kind's sets its own."""
    if kind != "late_fusion":
        return {**params, **point}
    base = params.get("base") or {}
    return {**params, "base": {m: {**base.get(m, {}), **point} for m in inputs}}


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination, in the spec's order.

    >>> grid_points({"max_depth": [2, 3], "learning_rate": [0.1]})
    [{'max_depth': 2, 'learning_rate': 0.1}, {'max_depth': 3, 'learning_rate': 0.1}]
    """
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def grid_search(spec, candidate, inputs: ModelInputs, y: np.ndarray, groups: np.ndarray,
                folds: int = 5) -> tuple[dict, list[dict]]:
    """The candidate's best parameters and, per grid point, the mean and per-fold metric."""
    if not candidate.grid:
        return dict(candidate.params), []
    strata = (y[:, 1] if y.ndim == 2 else y).astype(int)
    splits = list(StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=spec.seed)
                  .split(np.zeros(len(strata)), strata, groups))
    table = []
    for point in grid_points(candidate.grid):
        params = with_point(candidate.kind, candidate.inputs, candidate.params, point)
        scores = []
        for fit_rows, val_rows in splits:
            model = make_candidate(candidate.kind, candidate.inputs, params, spec.seed, spec.preprocessing,
                                   spec.poolings(), task=spec.task, horizon_days=spec.horizon_days)
            model.fit(inputs.take(fit_rows), y[fit_rows], groups[fit_rows])
            value = primary_metric(spec, task_metrics(spec, model, inputs.take(val_rows), y[val_rows])[0])
            scores.append(np.nan if value is None else float(value))
        mean = float(np.nanmean(scores)) if not np.all(np.isnan(scores)) else float("nan")
        table.append({"params": point, spec.promote_metric: round(mean, 4), "folds": [round(v, 4) for v in scores]})
        log.info("%s %s %s: %s %.4f", spec.name, candidate.name, point, spec.promote_metric, mean)
    best = max(range(len(table)), key=lambda i: (np.nan_to_num(table[i][spec.promote_metric], nan=-np.inf), -i))
    return with_point(candidate.kind, candidate.inputs, candidate.params, table[best]["params"]), table
