"""Held-out metrics (scikit-learn, scikit-survival): binary, including the alert burden at the
operating threshold that decides whether clinicians will trust a model; multiclass, per class;
survival, Harrell's C and the risk at the model's horizon."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (accuracy_score, average_precision_score, brier_score_loss, confusion_matrix,
                             f1_score, fbeta_score, precision_score, recall_score, roc_auc_score)
from sksurv.metrics import brier_score, concordance_index_censored, cumulative_dynamic_auc
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv


def binary_metrics(y: np.ndarray, probability: np.ndarray, threshold: float) -> dict:
    y = np.asarray(y).astype(int)
    alerts = probability >= threshold
    tp = int((alerts & (y == 1)).sum())
    fp = int((alerts & (y == 0)).sum())
    fn = int((~alerts & (y == 1)).sum())
    tn = int((~alerts & (y == 0)).sum())
    both = len(set(y)) > 1
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "prevalence": round(float(y.mean()), 4) if len(y) else None,
        "auroc": round(float(roc_auc_score(y, probability)), 4) if both else None,
        "auprc": round(float(average_precision_score(y, probability)), 4) if both else None,
        "brier": round(float(brier_score_loss(y, probability)), 4) if len(y) else None,
        "threshold": threshold,
        "sensitivity": round(tp / (tp + fn), 4) if tp + fn else None,
        "specificity": round(tn / (tn + fp), 4) if tn + fp else None,
        "ppv": round(tp / (tp + fp), 4) if tp + fp else None,
        "alert_rate": round(float(alerts.mean()), 4) if len(y) else None,
    }


def _round(value) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def multiclass_metrics(y: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Accuracy, macro F1, macro one-vs-rest AUROC, multiclass Brier score, the confusion matrix
    (rows: true class, columns: predicted), and per class: one-vs-rest AUROC with its bootstrap
    95 % interval, AUPRC, sensitivity (recall), specificity, precision, F1 and F2 of the argmax."""
    from pipeline.modeling.evaluation import bootstrap_ci

    y = np.asarray(y).astype(int)
    labels = np.arange(len(classes))
    predicted = np.argmax(probabilities, axis=1)
    onehot = (y[:, None] == labels[None, :]).astype(float)
    per_class = {}
    for k, name in enumerate(classes):
        truth, chosen = y == k, predicted == k
        both = 0 < truth.sum() < len(y)
        per_class[name] = {
            "n": int(truth.sum()),
            "auroc": _round(roc_auc_score(truth, probabilities[:, k])) if both else None,
            "auroc_ci95": bootstrap_ci(truth, probabilities[:, k])["auroc"] if both else None,
            "auprc": _round(average_precision_score(truth, probabilities[:, k])) if both else None,
            "sensitivity": _round(recall_score(truth, chosen, zero_division=0)),
            "specificity": _round(((~truth) & (~chosen)).sum() / max((~truth).sum(), 1)),
            "precision": _round(precision_score(truth, chosen, zero_division=0)),
            "f1": _round(f1_score(truth, chosen, zero_division=0)),
            "f2": _round(fbeta_score(truth, chosen, beta=2, zero_division=0)),
        }
    present = [c["auroc"] for c in per_class.values() if c["auroc"] is not None]
    return {
        "n": int(len(y)), "class_counts": {name: int((y == k).sum()) for k, name in enumerate(classes)},
        "accuracy": _round(accuracy_score(y, predicted)),
        "macro_f1": _round(f1_score(y, predicted, labels=labels, average="macro", zero_division=0)),
        "auroc": _round(np.mean(present)) if present else None,
        "brier": _round(np.mean(np.sum((probabilities - onehot) ** 2, axis=1))),
        "confusion": confusion_matrix(y, predicted, labels=labels).tolist(),
        "per_class": per_class,
    }


def survival_metrics(days: np.ndarray, event: np.ndarray, risk: np.ndarray, probability: np.ndarray,
                     horizon_days: float, *, resamples: int = 200, seed: int = 7) -> dict:
    """Harrell's C of the risk score (log hazard) with a bootstrap 95 % interval, and the
    probability of the event by the horizon against what happened by then.

    ``auroc`` / ``brier`` at the horizon weight each patient by the inverse probability of
    still being followed (IPCW, scikit-survival's ``cumulative_dynamic_auc`` / ``brier_score``,
    the censoring distribution estimated on these rows), so patients censored before the horizon
    count through those followed longer. Keeping only the patients whose status is known would
    over-represent early events (their status is known sooner) and inflate the event rate.
    ``observed_risk`` is the Kaplan-Meier event rate by the horizon, to hold against
    ``mean_predicted``; ``auroc_known`` / ``brier_known`` are the unweighted values on the rows
    whose status is known (an event by the horizon, or followed past it).
    """
    days, event, risk = np.asarray(days, float), np.asarray(event).astype(bool), np.asarray(risk, float)
    probability = np.asarray(probability, float)
    c_index = concordance_index_censored(event, days, risk)[0]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        rows = rng.integers(0, len(days), len(days))
        if event[rows].any():
            draws.append(concordance_index_censored(event[rows], days[rows], risk[rows])[0])
    known = (event & (days <= horizon_days)) | (days > horizon_days)
    by_horizon = (event & (days <= horizon_days))[known]
    both = 0 < by_horizon.sum() < known.sum()
    outcome = Surv.from_arrays(event, days)
    try:  # needs follow-up past the horizon and an event before it
        auroc = cumulative_dynamic_auc(outcome, outcome, probability, [horizon_days])[0][0]
        brier = brier_score(outcome, outcome, (1 - probability)[:, None], [horizon_days])[1][0]
    except ValueError:
        auroc = brier = None
    times, surviving = kaplan_meier_estimator(event, days)
    still = surviving[np.searchsorted(times, horizon_days, side="right") - 1] if (times <= horizon_days).any() else 1.0
    return {
        "n": int(len(days)), "events": int(event.sum()), "c_index": _round(c_index),
        "c_index_ci95": [_round(v) for v in np.percentile(draws, [2.5, 97.5])] if draws else None,
        "horizon_days": horizon_days, "known_at_horizon": int(known.sum()), "events_by_horizon": int(by_horizon.sum()),
        "auroc": _round(auroc), "brier": _round(brier),
        "observed_risk": _round(1 - still), "mean_predicted": _round(probability.mean()) if len(days) else None,
        "auroc_known": _round(roc_auc_score(by_horizon, probability[known])) if both else None,
        "brier_known": _round(brier_score_loss(by_horizon, probability[known])) if known.any() else None,
    }


def task_metrics(spec, model, inputs, y: np.ndarray, **options) -> tuple[dict, tuple]:
    """Held-out metrics of the spec's task, and the binary view the report plots: (labels,
    probability) of the outcome, of any class but the first, or of the event by the horizon.
    ``options`` go to the model's predictions (a late-fusion ablation's ``only``)."""
    probability = model.predict_proba(inputs, **options)
    if spec.task == "binary":
        return binary_metrics(y, probability, spec.operating_threshold), (y, probability)
    if spec.task == "multiclass":
        metrics = multiclass_metrics(y, model.predict_outputs(inputs, **options), spec.classes)
        adverse = (y != 0).astype(int)
        metrics["adverse"] = binary_metrics(adverse, probability, spec.operating_threshold)
        return metrics, (adverse, probability)
    days, event = y[:, 0], y[:, 1].astype(bool)
    metrics = survival_metrics(days, event, model.predict_outputs(inputs, **options), probability, spec.horizon_days,
                               seed=spec.seed)
    known = (event & (days <= spec.horizon_days)) | (days > spec.horizon_days)
    return metrics, ((event & (days <= spec.horizon_days))[known].astype(int), probability[known])


def primary_metric(spec, metrics: dict) -> float | None:
    """The spec's promotion metric (AUROC, macro AUROC, C-index, ...) out of a metrics dict."""
    return metrics.get(spec.promote_metric)
