"""Stage 3, features: window features of every active stay (incremental from last night's), and
the event sequences of models that read them."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from pipeline.config import Settings
from pipeline.features.incremental import advance, edge_ranges
from pipeline.features.windows import EVENT_COLUMNS, KEY, static_features
from pipeline.modeling.inputs import event_sequences
from pipeline.modeling.spec import parse_spec
from pipeline.stages.context import active_stays, each_shard, in_shard, night_context, sharded
from pipeline.store import runs
from pipeline.store import features as feature_store
from pipeline.store.run_folder import RunFolder
from pipeline.store.warehouse import Warehouse


def features_stage(night, settings: Settings | None = None, run_id: str | None = None,
                   shard: int | None = None) -> dict:
    """Window features for every active stay of one shard (the DAG maps a task over the shards)
    or of all; incremental when last night was published.

    With last night's features in the warehouse and tonight's extraction starting at last
    night's prediction time, only stays whose window contents changed are recomputed from their
    stored events; the rest carry forward (``pipeline/features/incremental.py``).
    """
    ctx, wh = night_context(night, settings, run_id)
    cohort = ctx.read("validate", "cohort")
    return each_shard(ctx, shard, lambda k: _shard_features(wh, ctx, k, cohort))


def _shard_features(wh: Warehouse, ctx: RunFolder, shard: int, cohort: pd.DataFrame) -> dict:
    manifest = ctx.manifest()
    active = in_shard(ctx, active_stays(ctx), shard)
    t1 = ctx.prediction_time
    t0 = t1 - timedelta(days=1)
    tonight = _tonight(ctx, active["stay_id"])
    arrived = tonight["stay_id"].to_numpy()
    continuous = manifest["since"].get("events") == t0.isoformat(sep=" ")
    summary = {"active_stays": len(active)}
    for name, info in manifest["models"].items():
        spec = parse_spec(info["spec"], name)
        windows = spec.window_spec
        previous = _previous_features(wh, ctx.night - timedelta(days=1), name, info["version"], windows,
                                      active["stay_id"]) if continuous else None
        edges = []
        for low, high in edge_ranges(windows, t0, t1) if previous is not None else []:
            edges += feature_store.stays_with_events_between(wh, active["stay_id"].tolist(), ctx.night, low, high)
        windowed, counts = advance(previous, active["stay_id"].to_numpy(), arrived, edges,
                                   lambda stays, since: _stay_events(wh, ctx, stays, since, tonight), windows, t0, t1)
        features = static_features(cohort, active[KEY]).merge(windowed, on=KEY, how="left")
        ctx.write("features", sharded(name, shard), features)
        summary[name] = counts
        _write_event_sequences(wh, ctx, name, spec, active, tonight, shard)
    return summary


def _write_event_sequences(wh: Warehouse, ctx: RunFolder, name: str, spec, active: pd.DataFrame,
                           tonight: pd.DataFrame, shard: int) -> None:
    """A model's events modalities (windows of its lab/vital codes) of one shard's stays, where
    the embed stage's files are: ``embed/<model>.<modality>.shard-<k>.npz``, for the score stage."""
    for m in (m for m in spec.modalities if spec.source(m) == "events"):
        hours = int(spec.sequence.get("window_hours", 6)) * int(spec.sequence["windows"])
        events = _stay_events(wh, ctx, active["stay_id"], ctx.prediction_time - timedelta(hours=hours), tonight)
        values, mask = event_sequences(spec, events, active)
        ctx.write_arrays("embed", sharded(f"{name}.{m}", shard), stay_id=active["stay_id"].to_numpy(),
                         vectors=values, mask=mask)


def _previous_features(wh: Warehouse, night: date, model: str, version: str, spec,
                       stays: pd.Series) -> pd.DataFrame | None:
    """Last night's published window features of ``stays``, if that night scored with the same
    model version."""
    if (runs.night_models(wh, night) or {}).get(model) != version:
        return None
    long = feature_store.stay_features(wh, night, stays.tolist())
    wide = long[long["feature"].isin(spec.columns())].pivot(index="stay_id", columns="feature", values="value")
    return wide.reindex(columns=spec.columns()).astype("float64").reset_index().astype({"stay_id": "int64"})


def _tonight(ctx: RunFolder, stays: pd.Series) -> pd.DataFrame:
    """Tonight's validated events of ``stays`` (read from the night's file, all of which a
    large first night would not fit in memory)."""
    ids = [int(s) for s in stays]
    if not ids:
        return ctx.read("validate", "events").head(0)
    return ctx.read("validate", "events", filters=[("stay_id", "in", ids)])


def _stay_events(wh: Warehouse, ctx: RunFolder, stays, since, tonight: pd.DataFrame) -> pd.DataFrame:
    """Stored and tonight's events of ``stays`` with time after ``since`` (None: all), in
    (stay, time, value) order; a source row that arrived again tonight (a correction), in any
    stay, replaces its stored version."""
    stays = [int(s) for s in stays]
    past = feature_store.stay_events(wh, stays, ctx.night, ctx.prediction_time, since)
    if len(past):
        resent = ctx.read("validate", "events", columns=["source_row_id"],
                          filters=[("source_row_id", "in", past["source_row_id"].unique().tolist())])
        past = past[~past["source_row_id"].isin(resent["source_row_id"])]
    fresh = tonight[tonight["stay_id"].isin(stays)]
    if since is not None:
        fresh = fresh[fresh["time"] > since]
    return pd.concat([past[EVENT_COLUMNS], fresh[EVENT_COLUMNS]], ignore_index=True)
