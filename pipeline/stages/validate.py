"""Stage 2, validate: great-expectations suites per frame (failing rows quarantined with their
reasons), and the stays the night scores."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from pipeline.config import Settings
from pipeline.frames import RECORD_TABLES, TIME
from pipeline.stages.context import TABLES, night_context, write_shard_plan
from pipeline.store import features as feature_store
from pipeline.store.run_folder import RunFolder
from pipeline.store.warehouse import Warehouse
from pipeline.validate.checks import enforce_thresholds, validate


NO_DATA = "no measurement, note, ECG or image by the prediction time"


def validate_stage(night, settings: Settings | None = None, run_id: str | None = None) -> dict:
    ctx, wh = night_context(night, settings, run_id)
    frames = {t: ctx.read("extract", t) for t in TABLES}
    outcome = validate(frames, ctx.prediction_time, ctx.read("extract", "quarantined"))
    for table, result in outcome.tables.items():
        ctx.write("validate", table, result.valid)
        ctx.write("validate", f"{table}_duplicates", result.duplicates)
    ctx.write("validate", "quarantine", outcome.quarantine())
    ctx.write("validate", "dq", outcome.dq())
    in_icu, unscored = _scorable(wh, ctx, outcome)
    active = in_icu[~in_icu["stay_id"].isin(unscored["stay_id"])]
    ctx.write("validate", "active", active)
    shards = write_shard_plan(ctx, active)
    ctx.write("validate", "unscored", unscored)
    ctx.write("validate", "rows_quarantined", pd.DataFrame(
        {"source_table": list(outcome.tables), "rows": [r.rows_quarantined for r in outcome.tables.values()]}))
    summary = {t: {"valid": len(r.valid), "quarantined": r.rows_quarantined,
                   "duplicates": len(r.duplicates), "failure_rate": round(r.failure_rate, 4)}
               for t, r in outcome.tables.items()}
    summary["unscored_stays"] = len(unscored)
    summary["shards"] = len(shards)
    enforce_thresholds(outcome, ctx.settings.failure_rate_limit, ctx.settings.failure_rate_min_rows)
    return summary


SUPERSEDED = "still open while a later ICU stay of the same patient is open (a transfer never closed)"


def open_stay_conflicts(open_stays: pd.DataFrame, prediction_time: datetime, max_open_days: int) -> pd.DataFrame:
    """Open stays a night cannot score as they stand, with the reason: a patient in two open
    ICU stays (the earlier is not scored; its data stay valid, and it is scored again once the
    feed closes one), and a stay open longer than ``max_open_days`` (a discharge never recorded).

    >>> stays = pd.DataFrame({"stay_id": [1, 2, 3], "subject_id": [7, 7, 8],
    ...     "admit_time": pd.to_datetime(["2026-01-01", "2026-01-05", "1925-01-30"])})
    >>> open_stay_conflicts(stays, datetime(2026, 1, 6), 365)["stay_id"].tolist()
    [1, 3]
    """
    later_open = open_stays["admit_time"] < open_stays.groupby("subject_id")["admit_time"].transform("max")
    days = (pd.Timestamp(prediction_time) - open_stays["admit_time"]) / pd.Timedelta(days=1)
    reasons = pd.Series(pd.NA, index=open_stays.index, dtype="string")
    reasons[days > max_open_days] = f"still open more than {max_open_days} days after ICU admission " \
                                    f"(a discharge never recorded)"
    reasons[later_open] = SUPERSEDED
    flagged = reasons.notna()
    return pd.DataFrame({"stay_id": open_stays.loc[flagged, "stay_id"].astype("int64").to_numpy(),
                         "reason": reasons[flagged].to_numpy()})


def _scorable(wh: Warehouse, ctx: RunFolder, outcome) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stays in the ICU at the prediction time, and those of them the night does not score.

    A stay with nothing measured, written or recorded yet (admitted minutes before midnight, or
    a feed that never arrived) is not scored from demographics alone: it is listed with a
    reason instead, and scored on the first night it has data. So is an open stay whose state
    the feed contradicts (:func:`open_stay_conflicts`).
    """
    cohort = outcome.valid("cohort")
    open_stays = cohort[cohort["discharge_time"].isna()]
    in_icu = open_stays[["stay_id", "subject_id"]].copy()
    in_icu["prediction_time"] = pd.Series(pd.Timestamp(ctx.prediction_time), index=in_icu.index).astype(TIME)
    in_icu = in_icu.sort_values("stay_id").reset_index(drop=True)
    conflicts = open_stay_conflicts(open_stays, ctx.prediction_time, ctx.settings.max_open_stay_days)
    with_data = set()
    for table in ("events", *RECORD_TABLES):
        with_data |= set(outcome.valid(table)["stay_id"].dropna().astype(int))
    missing = [int(s) for s in in_icu["stay_id"] if int(s) not in with_data and int(s) not in set(conflicts["stay_id"])]
    if missing:
        with_data |= feature_store.stays_with_data(wh, missing, ctx.night, ctx.prediction_time)
        missing = [s for s in missing if s not in with_data]
    unscored = pd.concat([conflicts, in_icu[in_icu["stay_id"].isin(missing)][["stay_id"]].assign(reason=NO_DATA)],
                         ignore_index=True)
    return in_icu, unscored.sort_values("stay_id").reset_index(drop=True)
