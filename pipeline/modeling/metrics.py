"""Every metric primitive Vigil reports (scikit-learn, scikit-survival), in one module that
imports no other part of Vigil's modelling: binary, including the alert burden at the operating
threshold that decides whether clinicians will trust a model; calibration slope and intercept;
bootstrap intervals; multiclass, per class; survival, Harrell's C and the risk at the model's
horizon; the population stability index that drift monitoring uses."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (accuracy_score, average_precision_score, brier_score_loss, confusion_matrix,
                             f1_score, fbeta_score, precision_score, recall_score, roc_auc_score)
from sksurv.compare import compare_survival
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


def calibration(y: np.ndarray, probability: np.ndarray) -> dict:
    """Calibration slope (``y ~ a + b·logit(p)``) and intercept (calibration-in-the-large:
    ``y ~ a + offset(logit(p))``); ideal 1 and 0.

    >>> rng = np.random.default_rng(0); p = rng.uniform(0.02, 0.9, 20000)
    >>> c = calibration(rng.uniform(size=p.size) < p, p); abs(c["slope"] - 1) < 0.05, abs(c["intercept"]) < 0.05
    (True, True)
    """
    y = np.asarray(y, dtype=float)
    z = logit(np.clip(probability, 1e-6, 1 - 1e-6))
    fit = LogisticRegression(C=np.inf, max_iter=1000).fit(z[:, None], y)
    intercept = 0.0
    for _ in range(50):  # Newton steps for the intercept with the logit as a fixed offset
        p = expit(intercept + z)
        step = (y - p).sum() / max((p * (1 - p)).sum(), 1e-12)
        intercept += step
        if abs(step) < 1e-10:
            break
    return {"slope": round(float(fit.coef_[0, 0]), 4), "intercept": round(float(intercept), 4)}


def bootstrap_ci(y: np.ndarray, score: np.ndarray, n: int = 1000, seed: int = 7) -> dict[str, list[float]]:
    """Percentile 95 % intervals of AUROC and AUPRC over ``n`` resamples of the rows (resamples
    holding one class are skipped).

    Vectorised: a resample is a vector of row counts, so both metrics come from per-threshold
    sums of counts (ties grouped as scikit-learn groups them), not from 2n metric calls.

    >>> rng = np.random.default_rng(3); y = rng.uniform(size=300) < 0.3; s = y + rng.normal(size=300)
    >>> ci = bootstrap_ci(y, s); ci["auroc"][0] < roc_auc_score(y, s) < ci["auroc"][1]
    True
    """
    y, score = np.asarray(y).astype(bool), np.asarray(score, dtype=float)
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)) for _ in range(n)]).astype(float)
    order = np.argsort(-score, kind="stable")                       # descending thresholds
    ranked = score[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    counts = counts[:, order]
    positives = np.add.reduceat(counts * y[order], starts, axis=1)    # per distinct score, per resample
    negatives = np.add.reduceat(counts * ~y[order], starts, axis=1)
    total_pos, total_neg = positives.sum(axis=1), negatives.sum(axis=1)
    usable = (total_pos > 0) & (total_neg > 0)
    positives, negatives = positives[usable], negatives[usable]
    total_pos, total_neg = total_pos[usable], total_neg[usable]
    below = total_neg[:, None] - np.cumsum(negatives, axis=1)          # negatives scored lower
    auroc = (positives * (below + 0.5 * negatives)).sum(axis=1) / (total_pos * total_neg)
    tp, fp = np.cumsum(positives, axis=1), np.cumsum(negatives, axis=1)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    auprc = (positives / total_pos[:, None] * precision).sum(axis=1)
    return {name: [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])]
            for name, values in (("auroc", auroc), ("auprc", auprc))}


def evaluation_metrics(y: np.ndarray, probability: np.ndarray, threshold: float, *, seed: int = 7,
                       is_probability: bool = True) -> dict:
    """Everything the report shows for one set of scores. A raw severity score (not a
    probability) gets discrimination only."""
    y = np.asarray(y).astype(int)
    if len(set(y)) < 2:
        raise ValueError(f"cannot evaluate on {len(y)} examples of a single class: the cohort needs both outcomes")
    intervals = bootstrap_ci(y, probability, seed=seed)
    out = {"n": int(len(y)), "positives": int(y.sum()),
           "auroc": round(float(roc_auc_score(y, probability)), 4), "auroc_ci95": intervals["auroc"],
           "auprc": round(float(average_precision_score(y, probability)), 4), "auprc_ci95": intervals["auprc"]}
    if is_probability:
        at_threshold = binary_metrics(y, probability, threshold)
        out |= {k: at_threshold[k] for k in ("brier", "threshold", "sensitivity", "specificity", "ppv", "alert_rate")}
        out |= {f"calibration_{k}": v for k, v in calibration(y, probability).items()}
    return out


def psi(reference_quantiles: list[float], scores: np.ndarray) -> float | None:
    """Population stability index of ``scores`` against bins cut at the reference quantiles.

    Below 0.1 is stable, 0.1-0.25 worth a look, above 0.25 a shift.

    >>> psi(list(np.linspace(0, 1, 11)), np.linspace(0.001, 0.999, 1000)) < 0.01
    True
    """
    if len(scores) == 0 or not reference_quantiles:
        return None
    edges = np.unique(np.asarray(reference_quantiles, dtype=float))
    if len(edges) < 3:
        return None
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.full(len(edges) - 1, 1.0 / (len(edges) - 1))
    actual = np.histogram(scores, bins=edges)[0] / len(scores)
    actual = np.clip(actual, 1e-4, None)
    return round(float(np.sum((actual - expected) * np.log(actual / expected))), 4)


ALERT_RATES = (0.01, 0.02, 0.05, 0.10, 0.20, 0.30)


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """:func:`evaluation_metrics` plus the counts-based metrics at the operating threshold."""
    y = np.asarray(y).astype(int)
    alert = np.asarray(p) >= threshold
    return {**evaluation_metrics(y, p, threshold),
            "accuracy": round(float(accuracy_score(y, alert)), 4),
            "precision": round(float(precision_score(y, alert, zero_division=0)), 4),
            "f1": round(float(f1_score(y, alert, zero_division=0)), 4),
            "f2": round(float(fbeta_score(y, alert, beta=2, zero_division=0)), 4)}


def alert_burden(y: np.ndarray, p: np.ndarray, stays_per_day: float, rates=ALERT_RATES) -> pd.DataFrame:
    """At each alert rate (the top share of scores alerted): the threshold it takes, alerts per
    100 stays and per day at ``stays_per_day`` scored stays, PPV and sensitivity."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    rows = []
    for rate in rates:
        threshold = float(np.quantile(p, 1 - rate))
        alert = p >= threshold
        rows.append({"alert_rate": rate, "threshold": round(threshold, 4),
                     "alerts_per_100": round(100 * alert.mean(), 1),
                     "alerts_per_day": round(alert.mean() * stays_per_day, 1),
                     "ppv": round(float(y[alert].mean()), 3) if alert.any() else None,
                     "sensitivity": round(float(alert[y == 1].mean()), 3) if y.any() else None})
    return pd.DataFrame(rows)


def _round(value) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def multiclass_metrics(y: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Accuracy, macro F1, macro one-vs-rest AUROC, multiclass Brier score, the confusion matrix
    (rows: true class, columns: predicted), and per class: one-vs-rest AUROC with its bootstrap
    95 % interval, AUPRC, sensitivity (recall), specificity, precision, F1 and F2 of the argmax."""
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


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance index: the share of comparable pairs whose higher risk failed first."""
    return float(concordance_index_censored(np.asarray(event, bool), np.asarray(time, float), np.asarray(risk))[0])


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
    c_index = harrell_c(days, event, risk)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        rows = rng.integers(0, len(days), len(days))
        if event[rows].any():
            draws.append(harrell_c(days[rows], event[rows], risk[rows]))
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
        "risk_groups": group_survival(days, event, risk_groups(risk)),
    }


RISK_GROUPS = ("low", "medium", "high")


def risk_groups(risk: np.ndarray) -> np.ndarray:
    """Each row's tertile of predicted risk: ``low``, ``medium`` or ``high``.

    >>> risk_groups(np.array([0.1, 0.5, 0.9, 0.2, 0.6, 0.8])).tolist()
    ['low', 'medium', 'high', 'low', 'medium', 'high']
    """
    risk = np.asarray(risk, float)
    return np.array(RISK_GROUPS)[np.digitize(risk, np.quantile(risk, [1 / 3, 2 / 3]))] if len(risk) else \
        np.array([], dtype=str)


def group_survival(days: np.ndarray, event: np.ndarray, groups: np.ndarray) -> dict | None:
    """Each group's Kaplan-Meier curve (days, probability still event-free after them), and the
    log-rank test of the groups' difference (scikit-survival's ``compare_survival``; ``None``
    where its covariance is singular, e.g. a group with nobody at risk at any event time);
    ``None`` with fewer than two groups or no event."""
    days, event, groups = np.asarray(days, float), np.asarray(event).astype(bool), np.asarray(groups)
    labels = set(groups.tolist())
    present = [g for g in RISK_GROUPS if g in labels] + sorted(labels - set(RISK_GROUPS), key=str)
    if len(present) < 2 or not event.any():
        return None
    try:
        chi2, p = compare_survival(Surv.from_arrays(event, days), groups)
    except np.linalg.LinAlgError:
        chi2 = p = None
    curves = {}
    for group in present:
        rows = groups == group
        times, surviving = kaplan_meier_estimator(event[rows], days[rows])
        curves[str(group)] = {"n": int(rows.sum()), "events": int(event[rows].sum()),
                              "days": [round(float(t), 3) for t in times],
                              "surviving": [round(float(v), 4) for v in surviving]}
    return {"groups": curves, "log_rank_chi2": _round(chi2), "log_rank_df": len(present) - 1,
            "log_rank_p": None if p is None else float(f"{p:.3g}")}


def task_metrics(spec, model, inputs, y: np.ndarray, **options) -> tuple[dict, tuple]:
    """Held-out metrics of the spec's task, and the binary view the report plots: (labels,
    probability) of the outcome, of any class but the first, or of the event by the horizon.
    ``options`` go to the model's predictions (a late-fusion ablation's ``only``)."""
    probability = model.predict_risk(inputs, **options)
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
