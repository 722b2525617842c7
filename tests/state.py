"""What a warehouse holds after nights, as comparable text, and how to take a night back out.

Used by the fault-injection and idempotency tests: a disturbed night followed by its retry must
leave exactly the state an undisturbed night leaves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import date

import pandas as pd

from pipeline.store.warehouse import Warehouse, to_time
from tests.conftest import ROOT

NIGHT_TABLES = ("vigil_risk.risk_scores", "vigil_features.stay_features", "vigil_audit.quarantine",
                "vigil_audit.exclusions", "vigil_audit.dq_results", "vigil_audit.watermarks")


def _csv(frame: pd.DataFrame, key: list[str]) -> str:
    frame = frame.copy()
    for column in frame.columns:
        if column in ("time", "arrival_time", "prediction_time", "high_water"):
            frame[column] = to_time(frame[column])
        elif column in ("night", "ingest_night"):
            frame[column] = frame[column].astype(str)
    return frame.sort_values(key, kind="stable").to_csv(index=False)


def dump(wh: Warehouse) -> dict[str, str]:
    """Everything nights publish, in key order; stores without the night that ingested a row
    (which of two concurrent nights moved a re-sent row is not part of the result)."""
    risk = wh.read("SELECT * FROM vigil_risk.risk_scores")
    events = wh.read("SELECT stay_id, time, code, value, unit, arrival_time, source_table, source_row_id "
                     "FROM vigil_features.stay_events")
    records = wh.read("SELECT modality, record_id, stay_id, time, arrival_time, category, uri, content_hash "
                      "FROM vigil_features.stay_records")
    assert not events.duplicated("source_row_id").any(), "an event is stored twice"
    return {
        "risk": _csv(risk, ["night", "stay_id", "model_name"]),
        "features": _csv(wh.read("SELECT * FROM vigil_features.stay_features"), ["night", "stay_id", "feature"]),
        "events": _csv(events, ["source_row_id"]),
        "records": _csv(records, ["modality", "record_id"]),
        "quarantine": _csv(wh.read("SELECT * FROM vigil_audit.quarantine"),
                           ["night", "source_table", "record_id", "check_name"]),
        "exclusions": _csv(wh.read("SELECT * FROM vigil_audit.exclusions"),
                           ["night", "source_table", "record_id", "reason"]),
        "watermarks": _csv(wh.read("SELECT * FROM vigil_audit.watermarks"), ["source_table", "night"]),
    }


def night_rows(wh: Warehouse, night: date) -> dict[str, int]:
    """How many rows of ``night`` each night-keyed table holds (all zero: nothing published)."""
    counts = {t: int(wh.scalar(f"SELECT COUNT(*) FROM {t} WHERE night = :n", {"n": night})) for t in NIGHT_TABLES}
    counts["stay_events"] = int(wh.scalar("SELECT COUNT(*) FROM vigil_features.stay_events WHERE ingest_night = :n",
                                          {"n": night}))
    counts["runs"] = int(wh.scalar("SELECT COUNT(*) FROM vigil_audit.runs WHERE night = :n", {"n": night}))
    return counts


def unpublish(wh: Warehouse, night: date) -> None:
    """Remove what publishing ``night`` wrote, as if it had never run (rows it moved from an
    earlier night's store arrived in its window, so re-running it brings them back)."""
    with wh.begin() as conn:
        for table in NIGHT_TABLES:
            wh.execute(conn, f"DELETE FROM {table} WHERE night = :n", {"n": night})
        for table in ("vigil_features.stay_events", "vigil_features.stay_records"):
            wh.execute(conn, f"DELETE FROM {table} WHERE ingest_night = :n", {"n": night})
        wh.execute(conn, "DELETE FROM vigil_audit.run_counts WHERE night = :n", {"n": night})
        wh.execute(conn, "DELETE FROM vigil_audit.runs WHERE night = :n", {"n": night})


def run_child(settings, code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python process with this home's settings (as an Airflow worker
    would run a task); ``NIGHT`` and ``SETTINGS`` are defined for it."""
    env = {**os.environ, "VIGIL_HOME": str(settings.home), "VIGIL_WAREHOUSE_URL": settings.warehouse_url,
           "VIGIL_FILESTORE": str(settings.filestore), "VIGIL_DEVICE": "cpu",
           "VIGIL_MAX_FAILURE_RATE": str(settings.max_failure_rate), "HF_HUB_OFFLINE": "1"}
    prelude = "from pipeline.config import load_settings\nSETTINGS = load_settings()\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
