"""The publish stage: one transaction makes a night visible.

Risk rows, the night's stay features, the validated events and records it ingested, its
quarantine, exclusions and data-quality results, the run audit row with row accounting, and the advanced
watermarks commit together or not at all. Every write replaces the night's own key range, so
re-running a night replaces its rows and never duplicates them: a night has one audit row, whichever
of its runs published last, and publishing a run that already committed changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone

import pandas as pd

from pipeline.frames import RECORD_TABLES
from pipeline.store import runs
from pipeline.store.warehouse import Warehouse

log = logging.getLogger(__name__)

INCREMENTAL_TABLES = ("events", *RECORD_TABLES)
STORE_EVENT_COLUMNS = ["stay_id", "time", "code", "value", "unit", "arrival_time", "source_table", "source_row_id"]
STORE_RECORD_COLUMNS = ["modality", "record_id", "stay_id", "time", "arrival_time", "category", "uri", "text",
                        "content_hash"]


class AccountingError(RuntimeError):
    """Rows in did not equal rows used + quarantined + excluded: something was lost."""


def risk_digest(risk: pd.DataFrame, *, versions: bool = True) -> str:
    """sha256 of the night's risk rows in key order; equal digests mean identical rows.

    Without ``versions`` each model version is cut to its candidate's name (a version is
    ``<training time>-<candidate>``): two trainings that fit the same models from the same data
    then give the same digest, so a retraining or a code change can be shown to leave every
    score, factor and band as it was."""
    if not versions:
        risk = risk.assign(model_version=risk["model_version"].astype(str).str.split("-", n=1).str[-1])
    ordered = risk.sort_values(["stay_id", "model_name"], kind="stable")
    return hashlib.sha256(ordered.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S").encode()).hexdigest()


def content_digest(results: NightResults, risk_sha256: str) -> str:
    """sha256 of everything a publish writes but its timestamps: two publishes of one run with
    the same digest leave the same state, so the second may skip its writes. Events are hashed
    part by part, as they were validated."""
    digest = hashlib.sha256(risk_sha256.encode())

    def keyed() -> Iterator[tuple[pd.DataFrame, list[str]]]:
        yield results.stay_features, ["stay_id", "feature"]
        for part in results.events():
            yield part, ["source_row_id"]
        yield from ((results.records, ["modality", "record_id"]),
                    (results.quarantine, ["source_table", "record_id", "reason"]),
                    (results.exclusions, ["source_table", "record_id", "reason"]),
                    (results.dq, ["source_table", "expectation", "column_name"]),
                    (results.counts, ["source_table"]))

    for frame, key in keyed():
        ordered = frame.sort_values([k for k in key if k in frame], kind="stable") if len(frame) else frame
        digest.update(ordered.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S").encode())
    digest.update(json.dumps([results.stays_active, results.stays_unscored, results.models], sort_keys=True).encode())
    return digest.hexdigest()


def accounting(records_in: dict[str, int], used: dict[str, int], quarantined: dict[str, int],
               excluded: dict[str, int]) -> pd.DataFrame:
    """Per-table counts; raises :class:`AccountingError` unless in = used + quarantined + excluded.

    >>> accounting({"events": 10}, {"events": 7}, {"events": 2}, {"events": 1})["records_in"].tolist()
    [10]
    """
    rows = []
    for table, count in records_in.items():
        row = {"source_table": table, "records_in": int(count), "used": int(used.get(table, 0)),
               "quarantined": int(quarantined.get(table, 0)), "excluded": int(excluded.get(table, 0))}
        if row["records_in"] != row["used"] + row["quarantined"] + row["excluded"]:
            raise AccountingError(
                f"{table}: {row['records_in']} rows in but {row['used']} used + {row['quarantined']} quarantined "
                f"+ {row['excluded']} excluded = {row['used'] + row['quarantined'] + row['excluded']}")
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class NightResults:
    night: date
    run_id: str
    prediction_time: datetime
    started_at: datetime
    risk: pd.DataFrame
    stay_features: pd.DataFrame
    events: Callable[[], Iterator[pd.DataFrame]]   # tonight's validated events, part by part: all at once may not fit
    records: pd.DataFrame
    quarantine: pd.DataFrame
    exclusions: pd.DataFrame
    dq: pd.DataFrame
    counts: pd.DataFrame
    stays_active: int
    models: dict[str, str]
    stays_unscored: int = 0
    enrolled: dict[str, int] | None = None   # per model with a cohort query: the active stays it enrols


def publish(wh: Warehouse, results: NightResults) -> dict:
    """Make the night visible, replacing whatever an earlier publish of it wrote; a publish of
    the same run that already committed (an Airflow retry, a cleared task) changes nothing."""
    night = results.night
    digest = risk_digest(results.risk)
    stays_scored = int(results.risk["stay_id"].nunique()) if not results.risk.empty else 0
    for model, version in results.models.items():
        scored = int((results.risk["model_name"] == model).sum())
        expected = (results.enrolled or {}).get(model, results.stays_active)
        if scored != expected:
            raise AccountingError(f"{model}: {scored} stays scored but {expected} are active"
                                  + (" and enrolled in its cohort" if model in (results.enrolled or {}) else ""))
    events = (part[STORE_EVENT_COLUMNS].assign(ingest_night=night) for part in results.events())
    records = results.records[STORE_RECORD_COLUMNS].assign(ingest_night=night)
    run = pd.DataFrame([{
        "run_id": results.run_id, "night": night, "prediction_time": results.prediction_time,
        "started_at": results.started_at, "published_at": datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0),
        "status": "published", "stays_active": results.stays_active, "stays_scored": stays_scored,
        "stays_unscored": results.stays_unscored, "risk_rows": len(results.risk), "risk_rows_sha256": digest,
        "models": json.dumps(results.models, sort_keys=True),
    }])
    watermarks = pd.DataFrame({"source_table": list(INCREMENTAL_TABLES), "night": night,
                               "high_water": results.prediction_time})
    summary = {"risk_rows": len(results.risk), "risk_rows_sha256": digest, "stays_scored": stays_scored,
               "scores_sha256": risk_digest(results.risk, versions=False)}
    run["content_sha256"] = content_digest(results, digest)
    written = {
        "vigil_risk.risk_scores": results.risk, "vigil_features.stay_features": results.stay_features,
        "vigil_audit.quarantine": results.quarantine.assign(night=night),
        "vigil_audit.exclusions": results.exclusions.assign(night=night),
        "vigil_audit.dq_results": results.dq.assign(night=night),
        "vigil_audit.run_counts": results.counts.assign(run_id=results.run_id, night=night),
        "vigil_audit.watermarks": watermarks,
    }
    kept_by = runs.publish_night(wh, night, run, written, events, records)
    if kept_by is not None and kept_by != results.run_id:
        log.warning("night %s was published by run %s, started after this run %s: nothing written",
                    night, kept_by, results.run_id)
        return {**summary, "superseded_by": kept_by}
    return summary
