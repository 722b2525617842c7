"""Windowed aggregates of labs and vitals: point-in-time correct, vectorised, sharded.

For a (stay, prediction time ``t``) the features of a code over an ``H``-hour lookback use
exactly the events with ``t - H < time <= t`` whose arrival (store) time is also ``<= t``; the
``stay`` lookback uses every such event of the stay. A value that was not yet stored at ``t``
cannot leak in. One polars group-by computes every aggregate of every window for a shard of
stays; shards bound memory, so ten times the stays needs ten times the time, not the RAM.

Every feature is a pure function of the events in its window (slope measures hours back from
the code's latest event, which every non-empty window of it contains; time-since-last counts
whole minutes), so equal event sets give bit-equal features whichever path (training, nightly,
incremental) computed them. Rows are put in (stay, code, time, value) order and aggregated one
contiguous group at a time, which makes ``first``/``last`` and float sums independent of the
order rows arrived in and of which other stays share the frame. Every aggregate, slope included
(from n, Σx, Σy, Σx², Σxy), is on polars' fast path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl

AGGREGATIONS = ("min", "max", "mean", "std", "first", "last", "count", "slope", "delta", "since_last", "sum")
DEFAULT_AGGREGATIONS = AGGREGATIONS[:-1]  # "sum" is for volumes (urine output), chosen per spec
KEY = ["stay_id", "prediction_time"]
EVENT_COLUMNS = ["stay_id", "time", "arrival_time", "code", "value"]
STAY = None  # the whole-stay lookback


@dataclass(frozen=True)
class WindowSpec:
    """Which codes, lookbacks (hours; ``None`` = whole stay) and aggregations to compute."""

    codes: tuple[str, ...]
    lookbacks: tuple[int | None, ...] = (24,)
    aggregations: tuple[str, ...] = DEFAULT_AGGREGATIONS
    missing_indicators: bool = True

    def __post_init__(self):
        unknown = set(self.aggregations) - set(AGGREGATIONS)
        if unknown:
            raise ValueError(f"unknown aggregation(s) {sorted(unknown)}; choose from {AGGREGATIONS}")
        if not self.lookbacks or any(h is not None and h <= 0 for h in self.lookbacks):
            raise ValueError(f"lookbacks must be positive hours or 'stay', got {self.lookbacks}")

    @property
    def finite_lookbacks(self) -> list[int]:
        return [h for h in self.lookbacks if h is not None]

    @property
    def max_lookback_hours(self) -> int | None:
        """How far back any window reaches (``None``: the whole stay)."""
        return None if STAY in self.lookbacks else max(self.lookbacks)

    def columns(self) -> list[str]:
        """Output columns, in their fixed order."""
        names = []
        for hours in self.lookbacks:
            for code in self.codes:
                names += [feature_name(code, a, hours) for a in self.aggregations]
                if self.missing_indicators:
                    names.append(feature_name(code, "missing", hours))
        return names


def window_label(hours: int | None) -> str:
    return "stay" if hours is None else f"{hours}h"


def code_label(code: str) -> str:
    return code.lower().replace("//", "_")


def feature_name(code: str, aggregation: str, hours: int | None) -> str:
    """``VITAL//heart_rate``, ``mean``, 24 -> ``vital_heart_rate__mean_24h``.

    >>> feature_name("LAB//lactate", "max", 24), feature_name("LAB//lactate", "count", None)
    ('lab_lactate__max_24h', 'lab_lactate__count_stay')
    """
    return f"{code_label(code)}__{aggregation}_{window_label(hours)}"


def _aggregate(aggregation: str, hours: int | None) -> list[pl.Expr]:
    label = window_label(hours)
    inside = pl.lit(True) if hours is None else pl.col("age_s") < hours * 3600
    value = pl.col("value").filter(inside)
    if aggregation == "slope":  # sums for the least-squares slope, finished in _slope
        x = pl.col("_x").filter(inside)
        return [value.count().cast(pl.Float64).alias(f"_n_{label}"), x.sum().alias(f"_sx_{label}"),
                value.sum().alias(f"_sy_{label}"), (x * x).sum().alias(f"_sxx_{label}"),
                (x * value).sum().alias(f"_sxy_{label}")]
    if aggregation == "since_last":  # whole minutes from the last measurement (exact in float)
        expr = (pl.col("age_s").filter(inside).min() // 60).cast(pl.Float64)
    elif aggregation == "delta":
        expr = value.last() - value.first()
    elif aggregation == "count":
        expr = value.count().cast(pl.Float64)
    elif aggregation == "sum":  # no events in the window: unknown, not zero
        expr = pl.when(value.count() > 0).then(value.sum())
    elif aggregation == "std":
        expr = value.std(ddof=1)
    else:
        expr = getattr(value, aggregation)()
    return [expr.cast(pl.Float64).alias(f"{aggregation}_{label}")]


def _slope(hours: int | None) -> pl.Expr:
    """(nΣxy - ΣxΣy) / (nΣx² - (Σx)²) per hour; x is at most the window's length in magnitude,
    so the differences lose little. Null below two distinct times."""
    label = window_label(hours)
    n, sx, sy, sxx, sxy = (pl.col(f"_{s}_{label}") for s in ("n", "sx", "sy", "sxx", "sxy"))
    denominator = n * sxx - sx * sx
    return pl.when(denominator > 1e-12 * n * sxx).then((n * sxy - sx * sy) / denominator).alias(f"slope_{label}")


def _lazy_events(events) -> pl.LazyFrame:
    if isinstance(events, pl.LazyFrame):
        frame = events
    elif isinstance(events, pl.DataFrame):
        frame = events.lazy()
    else:
        frame = pl.from_pandas(events[EVENT_COLUMNS]).lazy()
    return frame.select(
        pl.col("stay_id").cast(pl.Int64), pl.col("time").cast(pl.Datetime("us")),
        pl.col("arrival_time").cast(pl.Datetime("us")), pl.col("code").cast(pl.String),
        pl.col("value").cast(pl.Float64),
    )


def _keys(keys) -> pl.DataFrame:
    frame = keys if isinstance(keys, pl.DataFrame) else pl.from_pandas(pd.DataFrame(keys)[KEY])
    return frame.select(pl.col("stay_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us")))


def _in_windows(events: pl.LazyFrame, keys: pl.DataFrame, codes: Sequence[str], reach_hours: int | None) -> pl.DataFrame:
    """Events of the keys' stays available at each prediction time, ordered by (stay, prediction
    time, code, time, value), with their age in seconds and ``_group``, which numbers (stay,
    prediction time, code) in that order."""
    numbered = keys.sort(KEY).with_row_index("_key")  # key order == (stay, prediction time) order
    joined = (events.filter(pl.col("code").is_in(list(codes)))
              .join(numbered.lazy(), on="stay_id", how="inner", maintain_order="left")
              .filter((pl.col("time") <= pl.col("prediction_time"))
                      & (pl.col("arrival_time") <= pl.col("prediction_time")))
              .with_columns(age_s=(pl.col("prediction_time") - pl.col("time")).dt.total_seconds(),
                            _group=pl.col("_key").cast(pl.UInt64) * len(codes)
                            + pl.col("code").cast(pl.Enum(list(codes))).to_physical().cast(pl.UInt64)))
    if reach_hours is not None:
        joined = joined.filter(pl.col("age_s") < reach_hours * 3600)
    # only what aggregation needs travels through the sort; stay, time and code come back via _group
    rows = joined.select("_key", "_group", "time", "value", "age_s").collect()
    zero = pl.duration(microseconds=0)
    in_order = rows.height < 2 or rows.select(
        ((pl.col("_key").diff() > 0) | ((pl.col("_key").diff() == 0) & (
            (pl.col("time").diff() > zero) | ((pl.col("time").diff() == zero) & (pl.col("value").diff() >= 0)))))
        .slice(1).all()).item()
    # events already in (stay, time, value) order (as the store returns them) only need a stable
    # sort by code; anything else gets the full three-key sort
    if in_order:
        ordered = rows[np.argsort(rows["_group"].to_numpy(), kind="stable")]
    else:
        ordered = rows.sort(["_group", "time", "value"])
    # x for the slope: hours back from the group's latest event (the last row of its slice)
    return ordered.drop("_key").rechunk().with_columns(
        _x=(pl.col("time") - pl.col("time").max().over("_group")).dt.total_microseconds().cast(pl.Float64) / 3.6e9)


def _shard_features(events: pl.LazyFrame, keys: pl.DataFrame, spec: WindowSpec) -> np.ndarray:
    """The feature matrix of one shard: a row per key (in ``keys`` order), ``spec.columns()``."""
    aggregations = [e for hours in spec.lookbacks for a in spec.aggregations for e in _aggregate(a, hours)]
    if spec.missing_indicators and "count" not in spec.aggregations:
        aggregations += [e for hours in spec.lookbacks for e in _aggregate("count", hours)]
    rows = _in_windows(events, keys, spec.codes, spec.max_lookback_hours)
    long = rows.lazy().with_columns(pl.col("_group").set_sorted()).group_by("_group").agg(aggregations)
    if "slope" in spec.aggregations:
        long = long.with_columns([_slope(h) for h in spec.lookbacks])
    long = long.collect()
    # scatter (key, code) rows into the wide matrix; absent groups stay NaN (counts 0, missing 1)
    n_keys, n_codes = len(keys), len(spec.codes)
    order = keys.with_row_index("_row").sort(KEY)["_row"].to_numpy()  # _key i is keys row order[i]
    group = long["_group"].to_numpy()
    row, code = order[group // n_codes], group % n_codes
    matrix = np.full((n_keys, len(spec.columns())), np.nan)
    position = {name: i for i, name in enumerate(spec.columns())}
    for hours in spec.lookbacks:
        label = window_label(hours)
        for aggregation in spec.aggregations:
            target = np.array([position[feature_name(c, aggregation, hours)] for c in spec.codes])
            matrix[row, target[code]] = long[f"{aggregation}_{label}"].to_numpy()
        if "count" in spec.aggregations:
            counts = np.array([position[feature_name(c, "count", hours)] for c in spec.codes])
            matrix[:, counts] = np.nan_to_num(matrix[:, counts], nan=0.0)
        if spec.missing_indicators:
            present = np.zeros((n_keys, n_codes), dtype=bool)
            present[row, code] = long[f"count_{label}"].to_numpy() > 0
            flags = np.array([position[feature_name(c, "missing", hours)] for c in spec.codes])
            matrix[:, flags] = (~present).astype(float)
    return matrix


def window_features(events, keys, spec: WindowSpec, shard_stays: int = 2000) -> pd.DataFrame:
    """One row per (stay_id, prediction_time) of ``keys``, in their order; columns ``spec.columns()``.

    ``events`` (pandas, polars or a polars LazyFrame such as ``pl.scan_parquet``) needs stay_id,
    time, arrival_time, code, value. Shards of ``shard_stays`` stays are computed one at a time.
    """
    keys = _keys(keys)
    lazy = _lazy_events(events)
    matrix = np.full((len(keys), len(spec.columns())), np.nan)
    stays = keys["stay_id"].unique().sort()
    rows_of = keys.with_row_index("_row")
    for start in range(0, len(stays), shard_stays):
        shard = stays[start:start + shard_stays]
        shard_rows = rows_of.filter(pl.col("stay_id").is_in(shard.to_list()))
        shard_events = lazy.filter(pl.col("stay_id").is_between(shard.min(), shard.max()))
        matrix[shard_rows["_row"].to_numpy()] = _shard_features(shard_events, shard_rows.drop("_row"), spec)
    if not len(stays):
        matrix = _shard_features(lazy.head(0), keys, spec)
    # one float block for the features (not one per column): later row selections stay cheap
    frame = pd.DataFrame(matrix, columns=spec.columns(), copy=False)
    frame.insert(0, "prediction_time", keys["prediction_time"].to_pandas().astype("datetime64[us]"))
    frame.insert(0, "stay_id", keys["stay_id"].to_numpy())
    return frame


def sequence_features(events, keys, codes: Sequence[str], window_hours: int = 24, windows: int = 7,
                      aggregation: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Tumbling windows before each prediction time, oldest first, for sequence models.

    Returns ``(values, mask)``: ``values[i, w, c]`` is the ``aggregation`` of code ``c`` in
    window ``w`` of key ``i`` (NaN when unmeasured) and ``mask[i, w]`` says whether the window
    held any measurement. Window ``windows - 1`` ends at the prediction time.
    """
    if aggregation not in ("min", "max", "mean", "last", "count"):
        raise ValueError(f"sequence aggregation must be min, max, mean, last or count, not {aggregation!r}")
    keys = _keys(keys)
    row_of_key = keys.with_row_index("_row").sort(KEY)["_row"].to_numpy()  # _key i is the i-th key in KEY order
    long = (_in_windows(_lazy_events(events), keys, codes, window_hours * windows).lazy()
            .with_columns(slot=(windows - 1 - pl.col("age_s") // (window_hours * 3600)).cast(pl.Int64))
            .group_by(["_group", "slot"])
            .agg(getattr(pl.col("value"), aggregation)().cast(pl.Float64).alias("v"))
            .collect())
    values = np.full((len(keys), windows, len(codes)), np.nan)
    mask = np.zeros((len(keys), windows), dtype=bool)
    if len(long):
        group = long["_group"].to_numpy()
        rows, slots = row_of_key[group // len(codes)], long["slot"].to_numpy()
        values[rows, slots, group % len(codes)] = long["v"].to_numpy()
        mask[rows, slots] = True
    return values, mask


def static_features(cohort: pd.DataFrame, prediction_times: pd.DataFrame) -> pd.DataFrame:
    """Baseline fields known at admission, plus hours in the ICU at prediction time."""
    static = prediction_times[KEY].merge(
        cohort[["stay_id", "age", "sex", "unit", "admission_type", "admit_time"]], on="stay_id", how="left")
    static["hours_in_icu"] = (static["prediction_time"] - static["admit_time"]).dt.total_seconds() / 3600
    return static.drop(columns=["admit_time"])


def build_features(events, cohort: pd.DataFrame, prediction_times: pd.DataFrame, spec: WindowSpec) -> pd.DataFrame:
    """Static plus windowed features, one row per (stay, prediction time), in key order."""
    windowed = window_features(events, prediction_times, spec)
    return static_features(cohort, prediction_times).merge(windowed, on=KEY, how="left")
