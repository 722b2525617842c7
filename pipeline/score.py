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
                "risk_band", "operating_threshold", "modalities", "top_factors", "outputs", "modality_contributions"]


def score_stays(bundle: Bundle, spec: ModelSpec, inputs: ModelInputs, keys: pd.DataFrame, night: date) -> pd.DataFrame:
    """Risk rows for ``keys`` (stay_id, subject_id, prediction_time), one per stay, by stay id."""
    if len(inputs) != len(keys):
        raise ValueError(f"{len(inputs)} input rows for {len(keys)} stays")
    if len(keys) == 0:
        return pd.DataFrame(columns=RISK_COLUMNS)
    scored = bundle.model.scored(inputs, spec.top_k_factors)
    probability = np.round(scored.probability.astype(float), 6)
    outputs = _outputs(spec, scored.outputs) if spec.task != "binary" else [None] * len(keys)
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
        "modalities": scored.modalities,
        "top_factors": [to_json(f) for f in scored.factors],
        "outputs": [None if o is None else to_json(o) for o in outputs],
        "modality_contributions": [None if t is None else to_json(t) for t in scored.contributions],
    })
    return rows.sort_values("stay_id", kind="stable").reset_index(drop=True)


def to_json(value) -> str:
    """Strict JSON (what PostgreSQL's ``::json`` and every BI tool parse): a value that is not a
    finite number (NaN from an unmeasured feature) is written as ``null``, never as ``NaN``.

    >>> to_json([{"factor": "lactate", "value": float("nan"), "contribution": 0.5}])
    '[{"contribution": 0.5, "factor": "lactate", "value": null}]'
    """
    def strict(item):
        if isinstance(item, dict):
            return {k: strict(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [strict(v) for v in item]
        if isinstance(item, (float, np.floating)) and not np.isfinite(item):
            return None
        return item.item() if isinstance(item, np.generic) else item
    return json.dumps(strict(value), sort_keys=True, allow_nan=False)


def _outputs(spec: ModelSpec, raw: np.ndarray) -> list[dict]:
    """Per row, what the probability column cannot hold: each class's probability, or the log
    hazard behind the probability of the event within the horizon."""
    if spec.task == "multiclass":
        return [{"class": spec.classes[int(np.argmax(row))],
                 "probabilities": {c: round(float(v), 6) for c, v in zip(spec.classes, row)}} for row in raw]
    return [{"log_hazard": round(float(v), 6), "horizon_days": spec.horizon_days} for v in raw]
