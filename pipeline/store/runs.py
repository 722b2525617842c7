"""Runs and watermarks: ``vigil_audit.runs``, ``run_counts`` and ``watermarks``, and publishing
a night, which writes them with everything else the night made visible in one transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime

import pandas as pd

from pipeline.store.warehouse import Warehouse


def watermarks_before(wh: Warehouse, night: date) -> dict[str, datetime]:
    """Per source table, how far the nights before this one have ingested."""
    rows = wh.read(wh.query("runs/watermarks_before"), {"night": night}, times=("high_water",))
    return {r.source_table: r.high_water.to_pydatetime() for r in rows.itertuples()}


def published_before(wh: Warehouse, night: date) -> date | str | None:
    """The latest night published before ``night`` (None for the first)."""
    return wh.scalar(wh.query("runs/published_before"), {"night": night})


def is_published(wh: Warehouse, night: date) -> bool:
    return bool(wh.scalar(wh.query("runs/night_published"), {"night": night}))


def night_models(wh: Warehouse, night: date) -> dict[str, str] | None:
    """The model versions the published run of ``night`` scored with (None: not published)."""
    runs = wh.read(wh.query("runs/night_models"), {"night": night})
    return None if runs.empty else json.loads(runs["models"].iloc[0])


def risk_rows_sha256(wh: Warehouse, night: date) -> str | None:
    return wh.scalar(wh.query("runs/risk_rows_sha256"), {"night": night})


def latest(wh: Warehouse, limit: int) -> pd.DataFrame:
    return wh.read(wh.query("runs/latest"), {"limit": int(limit)},
                   times=("prediction_time", "started_at", "published_at"))


def counts_of_runs(wh: Warehouse, run_ids: list[str]) -> pd.DataFrame:
    return wh.read_in(wh.query("runs/counts_of_runs"), run_ids)


def publish_night(wh: Warehouse, night: date, run: pd.DataFrame, written: dict[str, pd.DataFrame],
                  events: Iterable[pd.DataFrame], records: pd.DataFrame) -> str | None:
    """Write a night in one transaction, replacing whatever an earlier publish of it wrote.

    ``run`` is the night's one audit row; ``written`` maps each table whose rows are keyed by
    night to the night's rows; ``events`` (part by part, no source row in two parts) and ``records``
    are tonight's ingested rows (a source row or record re-sent tonight moves to this night). Writers are serialised, so the check of
    what is published and the writes are atomic. Returns None when written, else the run that
    keeps the night: this run itself (already published: a retry changes nothing) or a run
    that started later."""
    run_id, started_at, content = run["run_id"].iloc[0], run["started_at"].iloc[0], run["content_sha256"].iloc[0]
    with wh.begin() as conn:
        wh.serialise_writers(conn)
        published = wh.read(wh.query("runs/published_run"), {"night": night}, conn=conn, times=("started_at",))
        if published[["run_id", "content_sha256"]].values.tolist() == [[run_id, content]]:
            return run_id
        if len(published) and published["run_id"].iloc[0] != run_id and \
                published["started_at"].iloc[0] > pd.Timestamp(started_at):
            return str(published["run_id"].iloc[0])
        for table in ("vigil_risk.risk_scores", "vigil_features.stay_features"):
            wh.replace_night(conn, table, night, written[table])
        wh.delete_night(conn, "vigil_features.stay_events", night, column="ingest_night")
        for part in events:
            wh.delete_in(conn, "vigil_features.stay_events", "source_row_id", part["source_row_id"].tolist())
            wh.bulk_insert(conn, "vigil_features.stay_events", part)
        wh.delete_night(conn, "vigil_features.stay_records", night, column="ingest_night")
        for modality, ids in records.groupby("modality")["record_id"]:
            wh.delete_in(conn, "vigil_features.stay_records", "record_id", ids, "modality = :m", {"m": modality})
        wh.bulk_insert(conn, "vigil_features.stay_records", records)
        for table in ("vigil_audit.quarantine", "vigil_audit.exclusions", "vigil_audit.dq_results"):
            wh.replace_night(conn, table, night, written[table])
        wh.replace_night(conn, "vigil_audit.runs", night, run)  # one audit row a night
        for table in ("vigil_audit.run_counts", "vigil_audit.watermarks"):
            wh.replace_night(conn, table, night, written[table])
    return None
