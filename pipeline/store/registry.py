"""The model registry table, ``vigil_models.model_versions``: one row per trained candidate,
the training run's best one ``selected``, at most one version of each model ``promoted``."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd

from pipeline.store.warehouse import Warehouse


def add_versions(wh: Warehouse, frame: pd.DataFrame, demote: bool) -> None:
    """Add one training run's versions; with ``demote``, no earlier version of the model stays
    promoted (same transaction)."""
    with wh.begin() as conn:
        if demote:
            wh.execute(conn, wh.query("registry/demote"), {"no": False, "name": frame["model_name"].iloc[0]})
        wh.bulk_insert(conn, "vigil_models.model_versions", frame)


def set_promoted(wh: Warehouse, model_name: str, version: str, at: datetime) -> None:
    """Make ``version`` the model's one promoted version."""
    with wh.begin() as conn:
        wh.execute(conn, wh.query("registry/demote"), {"no": False, "name": model_name})
        wh.execute(conn, wh.query("registry/promote"), {"yes": True, "at": at, "name": model_name, "v": version})


def paths(wh: Warehouse) -> pd.DataFrame:
    """Every version's artifact and report paths."""
    return wh.read(wh.query("registry/paths"))


def set_paths(wh: Warehouse, rows: list[dict]) -> None:
    """Rewrite paths: each row names ``model_name``, ``version``, ``artifact_uri``, ``report_uri``."""
    with wh.begin() as conn:
        for row in rows:
            wh.execute(conn, wh.query("registry/set_paths"), {"artifact": row["artifact_uri"],
                       "report": row["report_uri"], "name": row["model_name"], "v": row["version"]})


def selected_versions(wh: Warehouse, model_name: str) -> list[str]:
    """The selected version of each training run of the model, latest first."""
    return wh.read(wh.query("registry/selected_versions"), {"name": model_name, "yes": True})["version"].tolist()


def version(wh: Warehouse, model_name: str, version: str) -> dict | None:
    rows = wh.read(wh.query("registry/version"), {"name": model_name, "v": version})
    return None if rows.empty else rows.iloc[0].to_dict()


def versions(wh: Warehouse, model_name: str) -> list[str]:
    """Every version of the model, latest training first."""
    return wh.read(wh.query("registry/versions"), {"name": model_name})["version"].tolist()


def promoted(wh: Warehouse, model_name: str) -> dict | None:
    """The promoted version's row, its metrics parsed (None: nothing promoted)."""
    rows = wh.read(wh.query("registry/promoted"), {"name": model_name, "yes": True})
    if rows.empty:
        return None
    row = rows.iloc[0].to_dict()
    row["metrics"] = json.loads(row.pop("metrics_json"))
    return row


def trained_together(wh: Warehouse, model_name: str, trained_at) -> pd.DataFrame:
    """The candidates (name, artifact path) of one training run of the model."""
    return wh.read(wh.query("registry/trained_together"), {"name": model_name, "trained_at": trained_at})


def all_versions(wh: Warehouse) -> pd.DataFrame:
    return wh.read(wh.query("registry/all_versions"), times=("trained_at", "training_as_of"))


def report_uri(wh: Warehouse, model_name: str, version: str) -> str | None:
    rows = wh.read(wh.query("registry/report_uri"), {"model_name": model_name, "version": version})
    return None if rows.empty else rows["report_uri"].iloc[0]
