"""Stage 2, validate: great-expectations suites per frame (failing rows quarantined with their
reasons), and the stays the night scores."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from pipeline.config import Settings
from pipeline.frames import RECORD_TABLES, TIME, empty
from pipeline.stages.context import TABLES, night_context, write_shard_plan
from pipeline.store import features as feature_store
from pipeline.store.run_folder import RunFolder
from pipeline.store.warehouse import Warehouse
from pipeline.validate.checks import Validation, enforce_thresholds, merged, validate, validate_events


NO_DATA = "no measurement, note, ECG or image by the prediction time"


def validate_stage(night, settings: Settings | None = None, run_id: str | None = None) -> dict:
    """The night's frames through their suites. An extraction in parts of subjects (a large
    first night) has its events validated part by part against the whole night's valid cohort,
    each part written as it is done, so no step holds every event row at once."""
    ctx, wh = night_context(night, settings, run_id)
    parts = len(ctx.parts("extract", "events"))
    extracted = ctx.manifest().get("parts", 1)
    if parts != extracted:
        raise FileNotFoundError(f"the extraction of night {ctx.night} holds {parts} of its {extracted} parts: "
                                f"run the 'extract' stage again")
    frames = {t: ctx.read("extract", t) if t != "events" or parts == 1 else empty("events") for t in TABLES}
    outcome = validate(frames, ctx.prediction_time, ctx.read("extract", "quarantined"))
    for name in ("events", "events_duplicates"):
        ctx.clear_parts("validate", name)
    with_events = _validate_event_parts(ctx, outcome, parts) if parts > 1 else set()
    for table, result in outcome.tables.items():
        if table != "events" or parts == 1:
            ctx.write("validate", table, result.valid)
            ctx.write("validate", f"{table}_duplicates", result.duplicates)
    ctx.write("validate", "quarantine", outcome.quarantine())
    ctx.write("validate", "dq", outcome.dq())
    in_icu, unscored = _scorable(wh, ctx, outcome, with_events)
    active = in_icu[~in_icu["stay_id"].isin(unscored["stay_id"])]
    ctx.write("validate", "active", active)
    shards = write_shard_plan(ctx, active)
    ctx.write("validate", "unscored", unscored)
    ctx.write("validate", "rows_quarantined", pd.DataFrame(
        {"source_table": list(outcome.tables), "rows": [r.rows_quarantined for r in outcome.tables.values()]}))
    summary = {t: {"valid": r.rows_checked - r.rows_quarantined, "quarantined": r.rows_quarantined,
                   "duplicates": len(r.duplicates), "failure_rate": round(r.failure_rate, 4)}
               for t, r in outcome.tables.items()}
    summary["unscored_stays"] = len(unscored)
    summary["shards"] = len(shards)
    summary["parts"] = parts
    enforce_thresholds(outcome, ctx.settings.failure_rate_limit, ctx.settings.failure_rate_min_rows)
    return summary


SHARED_ID = "source row id appears more than once (two rows share one primary key)"
UNIQUE_ID_CHECK = "expect_column_values_to_be_unique(source_row_id)"
LAB_ID_PREFIX = "labevents/"


def _validate_event_parts(ctx: RunFolder, outcome: Validation, parts: int) -> set[int]:
    """Each part of the night's events validated and written on its own, keeping only its
    counts; ``outcome``'s events become the parts' sums. Returns the stays with valid events.

    A part's suite finds a source row id used twice within it. Ids that name their patient
    (``chartevents/<subject>/...``) cannot meet in two parts of subjects; a lab row's id
    (``labevents/<labevent_id>``) can. Every row checked under an id that rows of another part
    hold too, valid or not, is then quarantined in its part, as one suite over the whole night
    would have, and the uniqueness expectation's result counts it.
    """
    results = [outcome.tables["events"]]   # what extraction could not read
    lab_ids, stays = [], []
    for k in range(parts):
        result = validate_events(ctx.read_part("extract", "events", k), outcome.valid("cohort"))
        ctx.write_part("validate", "events", k, result.valid)
        ctx.write_part("validate", "events_duplicates", k, result.duplicates)
        lab_ids.append(np.unique(_hashed(_checked_lab_ids(result.valid, result.quarantine))))
        stays.append(set(result.valid["stay_id"].dropna().astype(int)))
        result.rows_valid, result.valid = len(result.valid), result.valid.head(0)   # the part is on disk
        results.append(result)
    values, count = np.unique(np.concatenate(lab_ids), return_counts=True)
    maybe = values[count > 1]   # by a 64-bit hash: the ids themselves are compared below
    suspects = [k for k in range(parts) if len(maybe) and np.isin(lab_ids[k], maybe).any()]
    found = {k: _ids_among(ctx.read_part("validate", "events", k), results[1 + k].quarantine, maybe)
             for k in suspects}
    seen = pd.Series([i for ids in found.values() for i in ids], dtype=object).value_counts()
    shared = set(seen.index[seen > 1])
    flagged = 0
    for k in (k for k in suspects if found[k] & shared):
        valid, result = ctx.read_part("validate", "events", k), results[1 + k]
        bad = valid["source_row_id"].astype(str).isin(shared).to_numpy()
        flagged += _quarantine_shared(result, valid[bad], shared)
        ctx.write_part("validate", "events", k, valid[~bad].reset_index(drop=True))
        stays[k] = set(valid.loc[~bad, "stay_id"].dropna().astype(int))
    outcome.tables["events"] = merged(results)
    if flagged:
        dq = outcome.tables["events"].dq
        unique = (dq["expectation"] == UNIQUE_ID_CHECK.split("(")[0]) & (dq["column_name"] == "source_row_id")
        dq.loc[unique, "success"] = False
        dq.loc[unique, "unexpected_count"] += flagged
    return set().union(*stays)


def _checked_lab_ids(valid: pd.DataFrame, quarantine: pd.DataFrame) -> pd.Series:
    """The lab row ids of a part's checked rows: its valid rows' and its quarantined rows'."""
    quarantined = quarantine["record_id"].astype("string").str.startswith(LAB_ID_PREFIX).fillna(False).astype(bool)
    return pd.concat([valid.loc[valid["source_table"] == "mimiciv_hosp.labevents", "source_row_id"].astype(str),
                      quarantine.loc[quarantined, "record_id"].astype(str)])


def _hashed(ids: pd.Series) -> np.ndarray:
    return pd.util.hash_array(ids.to_numpy(dtype=object))


def _ids_among(valid: pd.DataFrame, quarantine: pd.DataFrame, hashes: np.ndarray) -> set[str]:
    """A part's checked lab row ids whose hash is among ``hashes``."""
    ids = _checked_lab_ids(valid, quarantine).drop_duplicates()
    return set(ids[np.isin(_hashed(ids), hashes)])


def _quarantine_shared(result, valid: pd.DataFrame, shared: set[str]) -> int:
    """A part's rows under an id another part holds too, quarantined: its valid ones (counted
    as quarantined now) and its already quarantined ones (their reason added). How many rows
    the uniqueness check flags that the part's own suite had not."""
    quarantine = result.quarantine
    held = quarantine[quarantine["record_id"].astype(str).isin(shared)]
    unflagged = held.groupby(["record_id", "stay_id"], dropna=False)["check_name"].agg(
        lambda names: UNIQUE_ID_CHECK not in set(names))
    unflagged = unflagged[unflagged].reset_index()[["record_id", "stay_id"]]
    rows = pd.concat([valid[["source_row_id", "stay_id"]].rename(columns={"source_row_id": "record_id"}), unflagged],
                     ignore_index=True)
    found = pd.DataFrame({"source_table": "events", "record_id": rows["record_id"].astype("string"),
                          "stay_id": rows["stay_id"].astype("Int64"), "reason": SHARED_ID,
                          "check_name": UNIQUE_ID_CHECK})
    result.quarantine = pd.concat([quarantine, found], ignore_index=True)
    result.rows_quarantined += len(valid)
    result.rows_valid -= len(valid)
    return len(rows)


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


def _scorable(wh: Warehouse, ctx: RunFolder, outcome, with_events: set[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
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
    with_data = set(with_events)   # stays with valid events in a part of them (not kept in ``outcome``)
    for table in ("events", *RECORD_TABLES):
        with_data |= set(outcome.valid(table)["stay_id"].dropna().astype(int))
    missing = [int(s) for s in in_icu["stay_id"] if int(s) not in with_data and int(s) not in set(conflicts["stay_id"])]
    if missing:
        with_data |= feature_store.stays_with_data(wh, missing, ctx.night, ctx.prediction_time)
        missing = [s for s in missing if s not in with_data]
    unscored = pd.concat([conflicts, in_icu[in_icu["stay_id"].isin(missing)][["stay_id"]].assign(reason=NO_DATA)],
                         ignore_index=True)
    return in_icu, unscored.sort_values("stay_id").reset_index(drop=True)
