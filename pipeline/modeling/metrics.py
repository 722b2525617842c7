"""Held-out metrics for binary risk models (scikit-learn), including the alert burden at the
operating threshold that decides whether clinicians will trust a model."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


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
