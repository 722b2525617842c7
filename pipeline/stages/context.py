"""What every stage of a night shares: the night's date, its run folder and warehouse, and the
models it scores."""

from __future__ import annotations

import atexit
import logging
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from pipeline.config import Settings, load_settings
from pipeline.frames import SOURCE_TABLES
from pipeline.modeling import registry
from pipeline.modeling.spec import load_specs
from pipeline.store.run_folder import RunFolder
from pipeline.store.warehouse import Warehouse, connect

log = logging.getLogger(__name__)


TABLES = SOURCE_TABLES


def as_night(value: str | date | datetime) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def night_for_run(logical_date: datetime | None, run_after: datetime) -> date:
    """The night an Airflow run scores.

    A scheduled run covers the data interval that starts at its logical date, so the night is
    that date (UTC). A manual run without a logical date scores the last complete day before
    it was triggered.

    >>> night_for_run(datetime(2026, 2, 28, tzinfo=timezone.utc), datetime(2026, 3, 1, tzinfo=timezone.utc))
    datetime.date(2026, 2, 28)
    >>> night_for_run(None, datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc))
    datetime.date(2026, 2, 28)
    """
    if logical_date is not None:
        return logical_date.astimezone(timezone.utc).date() if logical_date.tzinfo else logical_date.date()
    after = run_after.astimezone(timezone.utc) if run_after.tzinfo else run_after
    return (after - timedelta(days=1)).date()


class NightNotPublished(RuntimeError):
    """The report of a night that no run has published (the DAG skips its report then)."""


def run_folder(night, settings: Settings | None = None, run_id: str | None = None) -> Path:
    """The folder of a run of ``night`` (default: the run extracted last)."""
    return RunFolder(settings or load_settings(), as_night(night), run_id).folder


_WAREHOUSES: dict[tuple[str, str], Warehouse] = {}


@atexit.register
def _close_warehouses() -> None:
    for wh in _WAREHOUSES.values():
        wh.dispose()


def night_context(night, settings: Settings | None, run_id: str | None = None) -> tuple[RunFolder, Warehouse]:
    """A run's folders and its warehouse; one engine per warehouse per process, so a loop
    of nights (``vigil run`` over dates, retries) does not open a new pool per stage."""
    settings = settings or load_settings()
    key = (settings.warehouse_url, str(settings.sql_dir))
    if key not in _WAREHOUSES:
        _WAREHOUSES[key] = connect(settings)
    return RunFolder(settings, as_night(night), run_id), _WAREHOUSES[key]


def promoted_models(wh: Warehouse, settings: Settings) -> dict[str, dict]:
    """The promoted version of every spec in ``models/`` (error if none is trained)."""
    found, untrained = {}, []
    for spec in load_specs(settings.models_dir):
        row = registry.promoted(wh, spec.name)
        if row is None:
            untrained.append(spec.name)
            continue
        found[spec.name] = {"version": row["version"], "artifact_uri": row["artifact_uri"]}
    if untrained:
        log.warning("models without a promoted version are not scored: %s (run `vigil train`)", ", ".join(untrained))
    if not found:
        raise RuntimeError(f"no model has a promoted version ({', '.join(untrained)}): run `vigil train` first")
    return found


def active_stays(ctx: RunFolder) -> pd.DataFrame:
    """The stays scored tonight: in the ICU at the prediction time, with some data."""
    return ctx.read("validate", "active")
