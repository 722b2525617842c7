"""The risk table, ``vigil_risk.risk_scores``, as the report, monitoring, the CLI and the
Vigil page read it (publish writes it: :func:`pipeline.store.runs.publish_night`)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from pipeline.store.warehouse import Warehouse


def night(wh: Warehouse, night: date) -> pd.DataFrame:
    return wh.read(wh.query("risk/night"), {"night": night})


def night_rows(wh: Warehouse, night: date) -> int:
    return int(wh.scalar(wh.query("risk/night_rows"), {"night": night}))


def last_night(wh: Warehouse):
    return wh.read(wh.query("risk/last_night"))["night"].iloc[0]


def night_distribution(wh: Warehouse, night: date) -> pd.DataFrame:
    return wh.read(wh.query("risk/night_distribution"), {"night": night})


def model_scores(wh: Warehouse, model_name: str, night: date, lookback_days: int) -> pd.DataFrame:
    """A model's scores of the nights from ``lookback_days`` before ``night`` up to it."""
    return wh.read(wh.query("risk/model_scores"),
                   {"model": model_name, "first": night - timedelta(days=lookback_days), "night": night},
                   times=("prediction_time",))


def top_latest(wh: Warehouse) -> pd.DataFrame:
    return wh.read(wh.query("risk/top_latest"))


def bi_example(sql_dir: Path) -> str:
    """The query a BI user starts from (printed by ``vigil demo``)."""
    return (sql_dir / "queries" / "risk" / "bi_example.sql").read_text().strip()
