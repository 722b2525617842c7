"""The report stage: what a night did, in numbers an operator can act on — row accounting,
top quarantine reasons, the score distribution, alerts at each model's operating threshold, and
score drift (PSI) against the model's held-out scores at training time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.modeling.metrics import psi


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
