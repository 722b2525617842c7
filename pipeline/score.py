"""The score stage: every active stay through a promoted model's fitted bundle."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd

from pipeline.modeling.inputs import ModelInputs
from pipeline.modeling.registry import Bundle
from pipeline.modeling.spec import ModelSpec

RISK_COLUMNS = ["night", "stay_id", "model_name", "subject_id", "model_version", "prediction_time", "probability",
                "risk_band", "operating_threshold", "modalities", "top_factors"]


def score_stays(bundle: Bundle, spec: ModelSpec, inputs: ModelInputs, keys: pd.DataFrame, night: date) -> pd.DataFrame:
    """Risk rows for ``keys`` (stay_id, subject_id, prediction_time), one per stay, by stay id."""
    if len(inputs) != len(keys):
        raise ValueError(f"{len(inputs)} input rows for {len(keys)} stays")
    if len(keys) == 0:
        return pd.DataFrame(columns=RISK_COLUMNS)
    probability = np.round(bundle.model.predict_proba(inputs).astype(float), 6)
    factors = bundle.model.explain(inputs, spec.top_k_factors)
    rows = pd.DataFrame({
        "night": night,
        "stay_id": keys["stay_id"].astype("int64").values,
        "model_name": bundle.model_name,
        "subject_id": keys["subject_id"].astype("int64").values,
        "model_version": bundle.version,
        "prediction_time": keys["prediction_time"].values,
        "probability": probability,
        "risk_band": [spec.band(p) for p in probability],
        "operating_threshold": float(spec.operating_threshold),
        "modalities": inputs.modalities_present(),
        "top_factors": [json.dumps(f, sort_keys=True) for f in factors],
    })
    return rows.sort_values("stay_id", kind="stable").reset_index(drop=True)
