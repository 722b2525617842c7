"""The report stage: what a night did, in numbers an operator can act on — row accounting,
top quarantine reasons, the score distribution, alerts at each model's operating threshold, and
score drift (PSI) against the model's held-out scores at training time."""

from __future__ import annotations

import numpy as np
import pandas as pd


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


def night_report(risk: pd.DataFrame, counts: pd.DataFrame, quarantine: pd.DataFrame, thresholds: dict[str, float],
                 reference: dict[str, list[float]]) -> dict:
    models = {}
    for model, rows in risk.groupby("model_name"):
        p = rows["probability"].to_numpy()
        models[model] = {
            "version": rows["model_version"].iloc[0],
            "stays_scored": int(len(rows)),
            "probability": {"mean": round(float(p.mean()), 4), "p50": round(float(np.median(p)), 4),
                            "p90": round(float(np.quantile(p, 0.9)), 4)},
            "bands": rows["risk_band"].value_counts().to_dict(),
            "alerts_at_threshold": int((p >= thresholds[model]).sum()),
            "operating_threshold": thresholds[model],
            "score_psi_vs_training": psi(reference.get(model, []), p),
            "modalities": rows["modalities"].value_counts().to_dict(),
        }
    reasons = (quarantine.drop_duplicates(["source_table", "record_id", "reason"])
               .groupby(["source_table", "reason"]).size().sort_values(ascending=False).head(10))
    return {
        "accounting": counts.to_dict(orient="records"),
        "top_quarantine_reasons": [{"table": t, "reason": r, "rows": int(n)} for (t, r), n in reasons.items()],
        "models": models,
    }
