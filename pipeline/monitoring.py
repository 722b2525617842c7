"""Model monitoring per night: input and score drift against the training distribution, and,
once outcomes arrive, discrimination and calibration of the scores made on earlier nights.

Drift is the population stability index (PSI) of each numeric input feature and of the score
against the training rows' deciles (the score: the held-out scores' 5 % quantiles). Performance
joins the risk rows of the last ``lookback_days`` nights with the outcomes known by tonight's
prediction time — the same label query training uses — so a mortality label that lands days
after the score still counts for the night it was scored on. A survival model's rows are judged
at its horizon: did the event follow within ``horizon_days`` of the night's prediction time.
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

from pipeline.modeling.metrics import calibration, psi
from pipeline.sources.mimic import read_labels
from pipeline.store import risk
from pipeline.store.warehouse import Warehouse

DRIFT_COLUMNS = ["night", "model_name", "model_version", "feature", "psi"]
PERFORMANCE_COLUMNS = ["night", "model_name", "model_version", "scored_night", "labelled", "positives", "auroc",
                       "brier", "calibration_slope", "calibration_intercept", "mean_predicted", "observed_rate"]


def reference_quantiles(frame: pd.DataFrame, bins: int = 10) -> dict[str, list[float]]:
    """Per numeric column, the training rows' quantile edges (the drift reference saved with a model)."""
    edges = np.linspace(0, 1, bins + 1)
    out = {}
    for column in frame.columns:
        values = pd.to_numeric(frame[column], errors="coerce").dropna().to_numpy(dtype=float)
        if pd.api.types.is_numeric_dtype(frame[column]) and len(values) >= bins:
            out[column] = np.quantile(values, edges).tolist()
    return out


def feature_drift(reference: dict[str, list[float]], frame: pd.DataFrame) -> dict[str, float]:
    """PSI of each referenced feature present tonight (None where too few distinct values)."""
    out = {}
    for column, quantiles in reference.items():
        if column in frame.columns:
            values = pd.to_numeric(frame[column], errors="coerce").dropna().to_numpy(dtype=float)
            value = psi(quantiles, values)
            if value is not None:
                out[column] = value
    return out


def performance(scores: pd.DataFrame, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (model, version, scored night): metrics over the scored stays whose outcome is known.

    ``scores``: ``night, stay_id, model_name, model_version, probability`` (and ``label``, when
    each row's outcome depends on its night, as at a survival horizon); ``labels``:
    ``stay_id, label``."""
    joined = scores if labels is None else scores.merge(labels[["stay_id", "label"]].drop_duplicates("stay_id"),
                                                        on="stay_id")
    rows = []
    for (model, version, night), group in joined.groupby(["model_name", "model_version", "night"], sort=True):
        y, p = group["label"].to_numpy(dtype=int), group["probability"].to_numpy(dtype=float)
        fit = calibration(y, p) if len(set(y)) > 1 else {"slope": None, "intercept": None}
        rows.append({"model_name": model, "model_version": version, "scored_night": night, "labelled": len(y),
                     "positives": int(y.sum()),
                     "auroc": round(float(roc_auc_score(y, p)), 4) if len(set(y)) > 1 else None,
                     "brier": round(float(brier_score_loss(y, p)), 4), "calibration_slope": fit["slope"],
                     "calibration_intercept": fit["intercept"], "mean_predicted": round(float(p.mean()), 4),
                     "observed_rate": round(float(y.mean()), 4)})
    return pd.DataFrame(rows, columns=PERFORMANCE_COLUMNS[1:])


def scored_performance(wh: Warehouse, spec, model_name: str, night: date, as_of: datetime,
                       lookback_days: int) -> pd.DataFrame:
    """:func:`performance` of the model's risk rows from the ``lookback_days`` nights up to
    ``night`` against the outcomes known by ``as_of``."""
    scores = risk.model_scores(wh, model_name, night, lookback_days)
    scores["night"] = pd.to_datetime(scores["night"].astype(str).str[:10]).dt.date
    if spec.task == "survival":
        return performance(at_horizon(scores, read_labels(wh, spec.label_query, as_of, "survival_labels"),
                                      spec.horizon_days))
    labels = read_labels(wh, spec.label_query, as_of)
    if spec.task == "multiclass":  # the risk row's probability is that of any class but the first
        labels["label"] = (labels["label"] != 0).astype(int)
    return performance(scores, labels)


def at_horizon(scores: pd.DataFrame, labels: pd.DataFrame, horizon_days: float) -> pd.DataFrame:
    """Survival risk rows (the probability of the event within the horizon of each row's
    prediction time) with the binary outcome they predicted, where it is known by now: an event
    within the horizon, or follow-up past it. Rows scored after their event are left out."""
    joined = scores.merge(labels[["stay_id", "event", "event_time"]].drop_duplicates("stay_id"), on="stay_id")
    end = joined["prediction_time"] + pd.Timedelta(days=horizon_days)
    event = joined["event"].astype(bool)
    by_horizon = event & (joined["event_time"] <= end)
    known = (by_horizon | (joined["event_time"] > end)) & ~(event & (joined["event_time"] <= joined["prediction_time"]))
    return joined[known].assign(label=by_horizon[known].astype(int)).drop(columns=["event", "event_time"])
