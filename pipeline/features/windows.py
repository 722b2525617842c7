"""Windowed aggregates of labs and vitals: point-in-time correct, vectorised, sharded.

For a (stay, prediction time ``t``) the features of a code over an ``H``-hour lookback use
exactly the events with ``t - H < time <= t`` whose arrival (store) time is also ``<= t``; the
``stay`` lookback uses every such event of the stay. A value that was not yet stored at ``t``
cannot leak in. Shards of stays bound memory, so ten times the stays needs ten times the time,
not the RAM.

One pass: the lookbacks are nested windows ending at ``t``, so each event is aggregated once,
into the age bucket between two consecutive lookbacks, as mergeable moments (count, min, max,
sums of values, squares, hours and their products, first, last, youngest age); a window is the
merge of its buckets. Rows are put in (stay, code, time, value) order, so a bucket is one
contiguous run and every moment one reduction over runs.

Every feature is a pure function of the events in its window (sums are of deviations from the
code's latest value and of hours back from its latest event, both inside every non-empty
window; time-since-last counts whole minutes), and the additions happen in the same order
whichever path (training, nightly, incremental) computed them, so equal event sets give
bit-equal features.
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
    time, code, time, value): ``_group`` numbers (stay, prediction time, code) in that order,
    ``time`` is in microseconds and ``age_s`` in whole seconds before the prediction time.
    Events without a value are left out."""
    numbered = keys.sort(KEY).with_row_index("_key")  # key order == (stay, prediction time) order
    joined = (events.filter(pl.col("code").is_in(list(codes)) & pl.col("value").is_not_nan())
              .join(numbered.lazy(), on="stay_id", how="inner", maintain_order="left")
              .filter((pl.col("time") <= pl.col("prediction_time"))
                      & (pl.col("arrival_time") <= pl.col("prediction_time")))
              .with_columns(age_s=(pl.col("prediction_time") - pl.col("time")).dt.total_seconds(),
                            _group=pl.col("_key").cast(pl.UInt64) * len(codes)
                            + pl.col("code").cast(pl.Enum(list(codes))).to_physical().cast(pl.UInt64)))
    if reach_hours is not None:
        joined = joined.filter(pl.col("age_s") < reach_hours * 3600)
    rows = joined.select("_key", "_group", pl.col("time").dt.epoch("us"), "value",
                         pl.col("age_s").cast(pl.Int64)).collect()
    key, group, time_us, value = (rows[c].to_numpy() for c in ("_key", "_group", "time", "value"))
    # events already in (stay, time, value) order (as the store returns them) only need a stable
    # sort by code; anything else gets the full three-key sort
    step_key, step_time = np.diff(key.astype(np.int64)), np.diff(time_us)
    in_order = bool(np.all((step_key > 0) | ((step_key == 0) & (
        (step_time > 0) | ((step_time == 0) & (np.diff(value) >= 0))))))
    if in_order:
        narrow = group.astype(np.uint32) if len(keys) * len(codes) < 2**32 else group
        order = np.argsort(narrow, kind="stable")
    else:
        order = np.lexsort((value, time_us, group))
    return pl.DataFrame({"_group": group[order], "time": time_us[order], "value": value[order],
                         "age_s": rows["age_s"].to_numpy()[order]})


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) rows of the runs of equal values in sorted ``keys``."""
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return starts, np.r_[starts[1:], len(keys)]


def _bucket_moments(rows: pl.DataFrame, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The groups (stay, prediction time, code) present in ``rows``, their latest values, and
    their mergeable moments per age bucket, as (group, bucket) matrices.

    Buckets lie between consecutive finite lookbacks (``[0, h1)``, ``[h1, h2)``, ... and, for the
    stay window, beyond the longest), so each event is aggregated once; the window of the j-th
    shortest lookback is buckets ``0..j`` merged (:func:`_merge_buckets`). Rows come in (group,
    time, value) order, so a bucket is one contiguous run and each moment is one reduction over
    runs. Sums are of deviations from the group's latest value and of hours back from its latest
    event (both inside every non-empty window of the group): the variance and slope of a constant
    series are exactly zero, and every moment depends only on the events of its bucket.
    """
    group = rows["_group"].to_numpy()
    value = rows["value"].to_numpy()
    time_us = rows["time"].to_numpy()
    age_s = rows["age_s"].to_numpy()
    group_start, group_end = _runs(group)
    sizes, latest = group_end - group_start, group_end - 1
    deviation = value - np.repeat(value[latest], sizes)
    hours = (time_us - np.repeat(time_us[latest], sizes)).astype(np.float64) / 3.6e9
    edges = np.array(sorted(h * 3600 for h in spec.finite_lookbacks), dtype=np.int64)
    n_buckets = len(edges) + 1
    bucket = np.searchsorted(edges, age_s, side="right")
    start, end = _runs(group * np.uint64(n_buckets) + bucket.astype(np.uint64))
    cell = (np.searchsorted(group_start, start, side="right") - 1, bucket[start])

    def per_bucket(values: np.ndarray, fill: float) -> np.ndarray:
        out = np.full((len(group_start), n_buckets), fill)
        out[cell] = values
        return out

    moments = {
        "n": per_bucket(end - start, 0.0), "min": per_bucket(np.minimum.reduceat(value, start), np.inf),
        "max": per_bucket(np.maximum.reduceat(value, start), -np.inf), "first": per_bucket(value[start], np.nan),
        "last": per_bucket(value[end - 1], np.nan), "min_age": per_bucket(age_s[end - 1], np.inf),
    }
    for name, x in (("sd", deviation), ("sdd", deviation * deviation), ("sx", hours), ("sxx", hours * hours),
                    ("sxd", hours * deviation), ("sv", value)):
        moments[name] = per_bucket(np.add.reduceat(x, start), 0.0)
    return group[group_start], value[latest], moments


def _merge_buckets(shift: np.ndarray, moments: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every aggregation of the windows ending at each bucket (column j: buckets 0..j merged).

    Sums accumulate from the youngest bucket, so a window's sums are the same additions in the
    same order whichever path computed them; first/last come from the oldest/youngest non-empty
    bucket in the window.
    """
    n = np.cumsum(moments["n"], axis=1)
    sd, sdd, sx, sxx, sxd, sv = (np.cumsum(moments[k], axis=1) for k in ("sd", "sdd", "sx", "sxx", "sxd", "sv"))
    present = moments["n"] > 0
    slots = np.arange(present.shape[1])
    oldest = np.maximum.accumulate(np.where(present, slots, -1), axis=1)
    youngest = np.minimum.accumulate(np.where(present, slots, len(slots)), axis=1)
    rows = np.arange(len(n))[:, None]
    first = np.where(oldest >= 0, moments["first"][rows, oldest.clip(0)], np.nan)
    last = np.where(youngest < len(slots), moments["last"][rows, youngest.clip(max=len(slots) - 1)], np.nan)
    shift = shift[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        empty = n == 0
        variance = np.maximum(sdd - sd * sd / n, 0.0) / (n - 1)
        denominator = n * sxx - sx * sx
        slope = np.where(denominator > 1e-12 * n * sxx, (n * sxd - sx * sd) / denominator, np.nan)
        since_last = np.where(empty, np.nan, np.minimum.accumulate(moments["min_age"], axis=1) // 60)
        return {
            "count": n, "min": np.where(empty, np.nan, np.minimum.accumulate(moments["min"], axis=1)),
            "max": np.where(empty, np.nan, np.maximum.accumulate(moments["max"], axis=1)),
            "mean": np.where(empty, np.nan, shift + sd / n), "std": np.where(n > 1, np.sqrt(variance), np.nan),
            "first": first, "last": last, "delta": last - first, "slope": np.where(n > 1, slope, np.nan),
            "since_last": since_last, "sum": np.where(empty, np.nan, sv),
        }


def _shard_features(events: pl.LazyFrame, keys: pl.DataFrame, spec: WindowSpec) -> np.ndarray:
    """The feature matrix of one shard: a row per key (in ``keys`` order), ``spec.columns()``."""
    rows = _in_windows(events, keys, spec.codes, spec.max_lookback_hours)
    n_keys, n_codes = len(keys), len(spec.codes)
    columns = spec.columns()
    position = {name: i for i, name in enumerate(columns)}
    matrix = np.full((n_keys, len(columns)), np.nan)
    present = np.zeros((n_keys, n_codes), dtype=bool)
    if rows.height:
        groups, latest, moments = _bucket_moments(rows, spec)
        merged = _merge_buckets(latest, moments)
        order = keys.with_row_index("_row").sort(KEY)["_row"].to_numpy()  # _key i is keys row order[i]
        row, code = order[groups // n_codes], groups % n_codes
        edges = sorted(spec.finite_lookbacks)
    for hours in spec.lookbacks:
        if rows.height:
            column = len(edges) if hours is None else edges.index(hours)
            for aggregation in spec.aggregations:
                target = np.array([position[feature_name(c, aggregation, hours)] for c in spec.codes])
                matrix[row, target[code]] = merged[aggregation][:, column]
            present[:] = False
            present[row, code] = merged["count"][:, column] > 0
        if "count" in spec.aggregations:
            counts = np.array([position[feature_name(c, "count", hours)] for c in spec.codes])
            matrix[:, counts] = np.nan_to_num(matrix[:, counts], nan=0.0)
        if spec.missing_indicators:
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
