"""The validate stage: run each canonical frame through its Great Expectations suite, split
it into valid rows and quarantined rows (with the reason of every failed expectation), and fail
the night when a table's failure rate passes its limit."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

logging.getLogger("great_expectations").setLevel(logging.WARNING)  # before GX logs its import

from pipeline.frames import RECORD_TABLES  # noqa: E402
from pipeline.validate import suites  # noqa: E402

ROW = "_row"
QUARANTINE_COLUMNS = ["source_table", "record_id", "stay_id", "reason", "check_name"]
EXACT_DUPLICATE_KEYS = {
    "events": ["source_table", "stay_id", "itemid", "time", "value_text", "source_unit"],
    "notes": ["record_id", "stay_id", "time", "text"],
    "ecgs": ["record_id", "stay_id", "time", "uri"],
    "images": ["record_id", "stay_id", "time", "uri"],
}
RECORD_ID = {"cohort": "stay_id", "events": "source_row_id", "notes": "record_id", "ecgs": "record_id",
             "images": "record_id"}


class DataQualityError(RuntimeError):
    """A table's failure rate passed its limit: the night must not publish."""


@dataclass
class TableResult:
    table: str
    valid: pd.DataFrame
    quarantine: pd.DataFrame
    duplicates: pd.DataFrame
    dq: pd.DataFrame
    rows_quarantined: int = 0  # rows, not ids: two rows sharing one bad id are two rows lost to use
    rows_valid: int | None = None  # when ``valid`` is not kept (a sum over shards): how many rows it held

    @property
    def rows_checked(self) -> int:
        return (len(self.valid) if self.rows_valid is None else self.rows_valid) + self.rows_quarantined

    @property
    def failure_rate(self) -> float:
        return self.rows_quarantined / self.rows_checked if self.rows_checked else 0.0


@dataclass
class Validation:
    tables: dict[str, TableResult] = field(default_factory=dict)

    def valid(self, table: str) -> pd.DataFrame:
        return self.tables[table].valid

    def quarantine(self) -> pd.DataFrame:
        return pd.concat([t.quarantine for t in self.tables.values()], ignore_index=True)

    def dq(self) -> pd.DataFrame:
        return pd.concat([t.dq for t in self.tables.values()], ignore_index=True)

    @staticmethod
    def counted(shards: list[Validation]) -> Validation:
        """What the thresholds judge, summed over shards: the rows each table checked and
        quarantined, and the quarantine itself; the valid rows themselves are not kept (not
        even under an empty slice, which would hold their memory)."""
        tables = {}
        for table in dict.fromkeys(t for shard in shards for t in shard.tables):
            results = [shard.tables[table] for shard in shards if table in shard.tables]
            tables[table] = TableResult(
                table=table, valid=pd.DataFrame({c: pd.Series(dtype=t) for c, t in results[0].valid.dtypes.items()}),
                quarantine=pd.concat([r.quarantine for r in results], ignore_index=True),
                duplicates=pd.concat([r.duplicates for r in results], ignore_index=True),
                dq=pd.DataFrame(), rows_quarantined=sum(r.rows_quarantined for r in results),
                rows_valid=sum(r.rows_checked - r.rows_quarantined for r in results))
        return Validation(tables)


def gx_context():
    """An in-memory GX context: no Data Docs temp folders, no progress bars, no file state."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (DataContextConfig, InMemoryStoreBackendDefaults,
                                                            ProgressBarsConfig)

    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                               progress_bars=ProgressBarsConfig(globally=False))
    context = gx.get_context(mode="ephemeral", project_config=config)
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    return context


def _run_suite(context, table: str, frame: pd.DataFrame, checks: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(quarantine rows, per-expectation results) of one frame against its checks."""
    source = context.data_sources.add_or_update_pandas(f"vigil_{table}")
    batch = (source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("night")
             .get_batch(batch_parameters={"dataframe": frame}))
    suite = context.suites.add_or_update(suites.build_suite(table, checks))
    result = batch.validate(suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW]})
    quarantined, summary = [], []
    for outcome in result.results:
        config = outcome.expectation_config
        if outcome.exception_info.get("raised_exception"):
            raise RuntimeError(f"{table}: expectation {config.type} could not run: "
                               f"{outcome.exception_info.get('exception_message')}")
        column = config.kwargs.get("column") or config.kwargs.get("column_A") or ",".join(config.kwargs.get("column_list", []))
        failed_rows = [entry[ROW] for entry in outcome.result.get("unexpected_index_list") or []]
        summary.append({"source_table": table, "expectation": config.type, "column_name": column,
                        "success": bool(outcome.success), "element_count": len(frame),
                        "unexpected_count": len(failed_rows)})
        if failed_rows:
            quarantined.append(pd.DataFrame({ROW: failed_rows, "reason": (config.meta or {}).get("reason", config.type),
                                             "check_name": f"{config.type}({column})"}))
    found = pd.concat(quarantined, ignore_index=True) if quarantined else pd.DataFrame(columns=[ROW, "reason", "check_name"])
    return found, pd.DataFrame(summary)


def validate_table(table: str, frame: pd.DataFrame, checks: list, context=None, flags=None) -> TableResult:
    """One table through its checks; ``flags(rows)`` adds the derived row flags its checks judge."""
    frame = frame.reset_index(drop=True)
    duplicated = frame.duplicated(subset=EXACT_DUPLICATE_KEYS[table], keep="first") if table in EXACT_DUPLICATE_KEYS \
        else pd.Series(False, index=frame.index)
    duplicates = frame[duplicated]
    checked = frame[~duplicated].copy()
    checked[ROW] = range(len(checked))
    if "arrival_time" in checked:
        checked[suites.ARRIVAL_NIGHT_END] = checked["arrival_time"].dt.ceil("D")
    if table == "notes":
        text = checked["text"].astype("string")
        checked[suites.UNREADABLE_SHARE] = (text.str.count(suites.UNREADABLE_CHARACTERS)
                                            / text.str.len().clip(lower=1)).astype("float64")
    derived_flags = flags(checked) if flags is not None else {}
    for name, values in derived_flags.items():
        checked[name] = values
    if checked.empty:
        failed, dq = pd.DataFrame(columns=[ROW, "reason", "check_name"]), pd.DataFrame()
    else:
        failed, dq = _run_suite(context or gx_context(), table, checked, checks)
    bad = checked[ROW].isin(failed[ROW])
    id_column = RECORD_ID[table]
    quarantine = failed.merge(checked[list(dict.fromkeys([ROW, id_column, "stay_id"]))], on=ROW, how="left")
    quarantine = pd.DataFrame({
        "source_table": table,
        "record_id": quarantine[id_column].astype("string"),
        "stay_id": quarantine["stay_id"].astype("Int64"),
        "reason": quarantine["reason"].astype("string"),
        "check_name": quarantine["check_name"].astype("string"),
    }, columns=QUARANTINE_COLUMNS)
    derived = [ROW, suites.ARRIVAL_NIGHT_END, suites.UNREADABLE_SHARE, *derived_flags]
    valid = checked[~bad].drop(columns=derived, errors="ignore").reset_index(drop=True)
    return TableResult(table=table, valid=valid, quarantine=quarantine, duplicates=duplicates, dq=dq,
                       rows_quarantined=int(bad.sum()))


def validate_events(events: pd.DataFrame, cohort: pd.DataFrame) -> TableResult:
    """One part of a night's events (the rows of some subjects) against the night's valid cohort."""
    context = gx_context()
    result = validate_table("events", events, suites.events_checks(cohort["stay_id"].astype(int).tolist()), context,
                            lambda rows: event_flags(rows, cohort))
    del context
    _release()
    return result


def merged(results: list[TableResult]) -> TableResult:
    """Parts of one table validated apart, as one result whose valid rows are not kept (they are
    each part's own), with the expectations' results summed: an expectation succeeds when it
    succeeds on every part."""
    judged = [r.dq.assign(_check=range(len(r.dq))) for r in results if len(r.dq)]   # a part's checks, in suite order
    dq = pd.DataFrame()
    if judged:
        dq = pd.concat(judged, ignore_index=True).groupby(
            ["_check", "source_table", "expectation", "column_name"], sort=True, as_index=False, dropna=False).agg(
            success=("success", "all"), element_count=("element_count", "sum"),
            unexpected_count=("unexpected_count", "sum")).drop(columns=["_check"])
    total = Validation.counted([Validation({"t": r}) for r in results]).tables["t"]
    total.table, total.dq = results[0].table, dq
    return total


def validate(frames: dict[str, pd.DataFrame], until: datetime, quarantined: pd.DataFrame | None = None
             ) -> Validation:
    """Validate the cohort first; every other table's rows must belong to a valid stay.

    ``quarantined``: rows extraction could not read (``source_table`` names the canonical table);
    they join each table's quarantine and count towards its failure rate.
    """
    outcome, context = Validation(), gx_context()
    outcome.tables["cohort"] = validate_table("cohort", frames["cohort"], suites.cohort_checks(until), context)
    cohort = outcome.tables["cohort"].valid
    stays = cohort["stay_id"].astype(int).tolist()
    outcome.tables["events"] = validate_table("events", frames["events"], suites.events_checks(stays), context,
                                              lambda rows: event_flags(rows, cohort))
    for table in RECORD_TABLES:
        outcome.tables[table] = validate_table(table, frames[table], suites.record_checks(table, stays),
                                               context)
    del context
    _release()
    if quarantined is not None:
        for table, rows in quarantined.groupby("source_table"):
            result = outcome.tables[table]
            result.quarantine = pd.concat([result.quarantine, rows[QUARANTINE_COLUMNS]], ignore_index=True)
            result.rows_quarantined += len(rows)
    return outcome


def _release() -> None:
    """Free a deleted context: its batches hold each validated frame, in reference cycles and in
    the module global where get_context keeps the last context, or a loop over shards carries
    one shard's frames into the next."""
    from great_expectations.data_context import set_context

    set_context(None)
    gc.collect()


def event_flags(rows: pd.DataFrame, cohort: pd.DataFrame) -> dict[str, pd.Series]:
    """Row flags of measurements: a unit missing where one is required, a sign or a zero the
    quantity cannot have, a chart time a day or more outside the row's own ICU stay."""
    value = rows["value"].to_numpy(dtype="float64", na_value=np.nan)
    lower = rows["lower_bound"].to_numpy(dtype="float64", na_value=np.nan)
    exclusive = rows["lower_exclusive"].fillna(False).to_numpy(dtype=bool)
    spans = rows[["stay_id"]].merge(cohort[["stay_id", "admit_time", "discharge_time"]].astype({"stay_id": "Int64"}),
                                    on="stay_id", how="left")
    margin = pd.Timedelta(hours=suites.STAY_MARGIN_HOURS)
    time = rows["time"].reset_index(drop=True)
    outside = (time < spans["admit_time"] - margin) | (time > spans["discharge_time"] + margin)
    return {
        suites.UNIT_MISSING: (rows["expected_unit"].notna() & rows["source_unit"].isna()).astype(bool),
        # a minus sign the range check lets through (-0, which compares equal to 0)
        suites.NEGATIVE_SIGN: pd.Series(np.signbit(value) & (lower >= 0) & (value >= lower), index=rows.index),
        suites.AT_EXCLUSIVE_BOUND: pd.Series(exclusive & (value <= lower), index=rows.index),
        suites.OUTSIDE_STAY: pd.Series(outside.fillna(False).to_numpy(dtype=bool), index=rows.index),
    }


def enforce_thresholds(outcome: Validation, limit_for, min_rows: int = 1) -> None:
    """Raise naming every table whose share of quarantined rows is above its limit, once at
    least ``min_rows`` of its rows are quarantined (one bad image on a night with one image is
    that image's problem, not a broken feed)."""
    problems = []
    for table, result in outcome.tables.items():
        limit = limit_for(table)
        if result.rows_checked and result.failure_rate > limit and result.rows_quarantined >= min_rows:
            top = result.quarantine.drop_duplicates("record_id")["reason"].value_counts().head(3)
            causes = "; ".join(f"{count} x {reason}" for reason, count in top.items())
            problems.append(f"{table}: {result.failure_rate:.1%} of {result.rows_checked} rows failed "
                            f"validation (limit {limit:.0%}); most common: {causes}")
    if problems:
        raise DataQualityError("data quality below threshold, night not published:\n  " + "\n  ".join(problems))
