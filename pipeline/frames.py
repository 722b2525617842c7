"""Canonical frames: the typed tables every source adapter yields and every stage reads.

Each contract lists its columns and pandas dtypes; :func:`conform` enforces it at a stage
boundary and raises naming the missing column rather than guessing.
"""

from __future__ import annotations

import pandas as pd

from pipeline.modality import Modality

TIME = "datetime64[us]"

CONTRACTS: dict[str, dict[str, str]] = {
    # one row per ICU stay admitted by the prediction time
    "cohort": {
        "stay_id": "int64", "subject_id": "int64", "hadm_id": "Int64",
        "admit_time": TIME, "discharge_time": TIME, "unit": "string",
        "age": "float64", "sex": "string", "admission_type": "string",
    },
    # long-format measurements (MEDS-like), one row per source value
    "events": {
        "source_table": "string", "source_row_id": "string", "stay_id": "Int64",
        "subject_id": "int64", "time": TIME, "arrival_time": TIME, "itemid": "int64",
        "code": "string", "value": "float64", "value_text": "string", "source_unit": "string",
        "expected_unit": "string", "unit": "string", "lower_bound": "float64", "upper_bound": "float64",
        "lower_exclusive": "boolean",
    },
    "notes": {
        "record_id": "string", "stay_id": "Int64", "subject_id": "int64", "time": TIME,
        "arrival_time": TIME, "category": "string", "text": "string",
    },
    "ecgs": {
        "record_id": "string", "stay_id": "Int64", "subject_id": "int64", "time": TIME,
        "arrival_time": TIME, "uri": "string", "rr_interval": "float64", "qrs_duration": "float64",
    },
    "images": {
        "record_id": "string", "stay_id": "Int64", "subject_id": "int64", "time": TIME,
        "arrival_time": TIME, "uri": "string", "category": "string", "view": "string",
    },
    # training only: what happened, and when it became known
    "labels": {"stay_id": "int64", "subject_id": "int64", "label_known_time": TIME, "label": "int64"},
    # training only, for "does the event happen within h hours": when it happened (NaT: never)
    "event_labels": {"stay_id": "int64", "subject_id": "int64", "label_known_time": TIME, "event_time": TIME},
    # training only, survival: the event's time, or the censoring time with event = 0
    "survival_labels": {"stay_id": "int64", "subject_id": "int64", "label_known_time": TIME, "event_time": TIME,
                        "event": "int64"},
    # which stays a model scores, from when (a spec's cohort query)
    "enrolment": {"stay_id": "int64", "enrolled_time": TIME},
}

RECORD_TABLES = tuple(m.table for m in Modality)
SOURCE_TABLES = ("cohort", "events", *RECORD_TABLES)   # what a night extracts, in order


def conform(frame: pd.DataFrame, contract: str) -> pd.DataFrame:
    """Select and cast the contract's columns, in order.

    >>> conform(pd.DataFrame({"stay_id": [1], "subject_id": [2], "label_known_time": ["2026-01-01"],
    ...                       "label": [0], "extra": ["x"]}), "labels").dtypes.tolist()
    [dtype('int64'), dtype('int64'), dtype('<M8[us]'), dtype('int64')]
    """
    columns = CONTRACTS[contract]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{contract} frame lacks column(s) {missing}; has {list(frame.columns)}")
    out = frame.loc[:, list(columns)].copy()
    for name, dtype in columns.items():
        if dtype == TIME:
            out[name] = pd.to_datetime(out[name], format="ISO8601").astype(TIME)
        elif dtype == "int64" and out[name].isna().any():
            raise ValueError(f"{contract}.{name} must not be empty ({int(out[name].isna().sum())} rows are)")
        else:
            out[name] = out[name].astype(dtype)
    return out.reset_index(drop=True)


def empty(contract: str) -> pd.DataFrame:
    return conform(pd.DataFrame({c: [] for c in CONTRACTS[contract]}), contract)
