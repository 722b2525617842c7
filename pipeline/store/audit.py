"""The night's audit trail as it was published: row accounting, quarantine, data quality,
drift and performance (the report's monitoring rows) and the alert conditions."""

from __future__ import annotations

from datetime import date

import pandas as pd

from pipeline.store.warehouse import Warehouse


def night_counts(wh: Warehouse, night: date) -> pd.DataFrame:
    return wh.read(wh.query("audit/night_counts"), {"night": night})


def night_quarantine(wh: Warehouse, night: date) -> pd.DataFrame:
    return wh.read(wh.query("audit/night_quarantine"), {"night": night})


def replace_monitoring(wh: Warehouse, night: date, drift: pd.DataFrame, performance: pd.DataFrame) -> None:
    """The night's drift and performance rows, replacing a re-run's, in one transaction (two
    runs of one night reporting at once take turns: their deletes and inserts would collide)."""
    with wh.begin() as conn:
        wh.serialise_writers(conn)
        for table, frame in (("vigil_audit.drift", drift), ("vigil_audit.performance", performance)):
            wh.replace_night(conn, table, night, frame.assign(night=night) if not frame.empty else frame)


def alert_conditions(wh: Warehouse, night: date | None) -> set[str]:
    """The conditions recorded for ``night`` (none for no night)."""
    if night is None:
        return set()
    return set(wh.read(wh.query("audit/alert_conditions"), {"night": night})["condition_key"])


def replace_alerts(wh: Warehouse, night: date, rows: pd.DataFrame) -> None:
    with wh.begin() as conn:
        wh.serialise_writers(conn)
        wh.replace_night(conn, "vigil_audit.alerts", night, rows)


def dq_last_night(wh: Warehouse):
    return wh.read(wh.query("audit/dq_last_night"))["night"].iloc[0]


def dq_results(wh: Warehouse, night: date) -> pd.DataFrame:
    return wh.read(wh.query("audit/dq_results"), {"night": night})


def drift_nights(wh: Warehouse, limit: int) -> pd.DataFrame | None:
    """The latest ``limit`` nights with drift figures (None: no drift table yet)."""
    if not wh.table_exists("vigil_audit.drift"):
        return None
    return wh.read(wh.query("audit/drift_nights"), {"limit": int(limit)})


def drift_since(wh: Warehouse, first) -> pd.DataFrame:
    return wh.read(wh.query("audit/drift_since"), {"first": first})
