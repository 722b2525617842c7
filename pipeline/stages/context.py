"""What every stage of a night shares: the night's date, its run folder and warehouse, and the
models it scores."""

from __future__ import annotations

import atexit
import json
import logging
import math
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
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


SHARD_PLAN = "shards.json"  # in the validate folder: where the night's active stays are cut into shards


MAX_SHARDS = 1024  # Airflow's default [core] max_map_length: a mapped task over more would fail


def shard_count(stays: int, settings: Settings) -> int:
    """How many shards a night of ``stays`` active stays runs in: ``VIGIL_SHARD_STAYS`` stays each
    when set, else ``VIGIL_SHARDS``; never more shards than stays or :data:`MAX_SHARDS`, and at
    least one."""
    if settings.night_shards < 1 or settings.shard_stays < 0:
        raise ValueError(f"VIGIL_SHARDS must be at least 1 and VIGIL_SHARD_STAYS at least 0 "
                         f"(got {settings.night_shards} and {settings.shard_stays})")
    wanted = math.ceil(stays / settings.shard_stays) if settings.shard_stays else settings.night_shards
    if wanted > MAX_SHARDS:
        log.warning("%d shards wanted for %d stays; a night runs in at most %d", wanted, stays, MAX_SHARDS)
    return max(1, min(wanted, stays, MAX_SHARDS))


def shard_edges(stay_ids, shards: int) -> list[int]:
    """The first stay id of every shard but the first: ``shards`` ranges of the sorted stays,
    as equal in size as they can be. Every stay id, active or not, falls in exactly one range.

    >>> shard_edges([9, 1, 5, 7, 3], 2)
    [7]
    """
    ordered = np.sort(np.asarray(stay_ids, dtype="int64"))
    return [int(part[0]) for part in np.array_split(ordered, shards)[1:] if len(part)]


def shard_of(stay_ids, edges: list[int]) -> np.ndarray:
    """The shard of each stay id (a row with no stay id goes to the first).

    >>> shard_of(pd.Series([1, 7, 8, None], dtype="Int64"), [7]).tolist()
    [0, 1, 1, 0]
    """
    ids = pd.Series(stay_ids, dtype="Int64").fillna(np.iinfo("int64").min).to_numpy("int64")
    return np.searchsorted(np.asarray(edges, dtype="int64"), ids, side="right")


def write_shard_plan(ctx: RunFolder, active: pd.DataFrame) -> list[int]:
    edges = shard_edges(active["stay_id"], shard_count(len(active), ctx.settings))
    ctx.write_json("validate", SHARD_PLAN, {"edges": edges})
    return shards_of(ctx)


def night_shards(night, settings: Settings | None = None, run_id: str | None = None) -> list[int]:
    """The night's shards (the DAG maps its features, embed and score tasks over them)."""
    return shards_of(night_context(night, settings, run_id)[0])


def shards_of(ctx: RunFolder) -> list[int]:
    return list(range(len(_edges(ctx)) + 1))


def _edges(ctx: RunFolder) -> list[int]:
    path = ctx.folder / "validate" / SHARD_PLAN
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the 'validate' stage of night {ctx.night} first")
    return json.loads(path.read_text())["edges"]


def in_shard(ctx: RunFolder, frame: pd.DataFrame, shard: int) -> pd.DataFrame:
    """The rows of ``frame`` whose stay falls in ``shard``."""
    return frame[shard_of(frame["stay_id"], _edges(ctx)) == shard].reset_index(drop=True)


def sharded(name: str, shard: int) -> str:
    """A stage file's name for one shard: ``features/<model>.shard-2.parquet``."""
    return f"{name}.shard-{shard}"


def read_shards(ctx: RunFolder, stage: str, name: str) -> pd.DataFrame:
    """A stage's file of every shard, concatenated in shard (so stay) order; a shard's file that
    does not hold only its own shard's stays (written under another plan) is refused."""
    parts = []
    for k in shards_of(ctx):
        part = ctx.read(stage, sharded(name, k))
        if "stay_id" in part and len(in_shard(ctx, part, k)) != len(part):
            raise RuntimeError(f"{stage}/{sharded(name, k)} of night {ctx.night} holds stays of another shard "
                               f"(written before the shards were cut again): re-run the '{stage}' stage")
        parts.append(part)
    kept = [p for p in parts if len(p)] or parts[:1]   # an empty shard's frame would turn every column to object
    return pd.concat(kept, ignore_index=True)


def each_shard(ctx: RunFolder, shard: int | None, work: Callable[[int], dict]) -> dict:
    """``work`` on one shard (a mapped task), or on each in turn (``vigil run``); the summaries
    of several shards are summed."""
    shards = shards_of(ctx)
    if shard is not None and shard not in shards:
        raise ValueError(f"night {ctx.night} has shards 0 to {len(shards) - 1}; there is no shard {shard}")
    return _summed([work(k) for k in ([shard] if shard is not None else shards)])


def _summed(summaries: list[dict]) -> dict:
    """Numbers summed key by key (nested too); anything else is the first shard's.

    >>> _summed([{"a": 1, "m": {"n": 2, "v": "x"}}, {"a": 3, "m": {"n": 1, "v": "x"}}])
    {'a': 4, 'm': {'n': 3, 'v': 'x'}}
    """
    total: dict = {}
    for summary in summaries:
        for key, value in summary.items():
            if key not in total:
                total[key] = value
            elif isinstance(value, dict):
                total[key] = _summed([total[key], value])
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                total[key] += value
    return total
