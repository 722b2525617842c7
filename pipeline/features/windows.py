"""Windowed aggregates of labs and vitals, point-in-time correct and vectorised.

For each (stay, prediction time) the features of a code over an ``H``-hour window use exactly
the events with ``prediction_time - H < time <= prediction_time`` whose arrival time is also
``<= prediction_time``: a value that was not yet stored at prediction time cannot leak in.
One polars group-by computes every aggregate for every stay at once; nothing loops per patient.
"""

from __future__ import annotations

import pandas as pd
import polars as pl

AGGREGATIONS = ("min", "max", "mean", "std", "last", "count", "slope")
KEY = ["stay_id", "prediction_time"]


def feature_name(code: str, aggregation: str, hours: int) -> str:
    """``VITAL//heart_rate`` -> ``vital_heart_rate__mean_24h``.

    >>> feature_name("LAB//lactate", "max", 24)
    'lab_lactate__max_24h'
    """
    return f"{code.lower().replace('//', '_')}__{aggregation}_{hours}h"


def _aggregate(aggregation: str) -> pl.Expr:
    value, hours = pl.col("value"), pl.col("hours")
    expressions = {
        "min": value.min(),
        "max": value.max(),
        "mean": value.mean(),
        "std": value.std(ddof=1),
        "last": value.sort_by("time").last(),
        "count": value.count().cast(pl.Float64),
        # least-squares slope of value over time, per hour (null with fewer than two times)
        "slope": ((hours * value).mean() - hours.mean() * value.mean())
        / ((hours * hours).mean() - hours.mean() ** 2),
    }
    return expressions[aggregation].alias(aggregation)


def window_features(events: pd.DataFrame, prediction_times: pd.DataFrame, codes: list[str],
                    windows_hours: list[int], aggregations: list[str]) -> pd.DataFrame:
    """One row per (stay_id, prediction_time), one column per code x aggregation x window.

    ``events`` needs stay_id, time, arrival_time, code, value; ``prediction_times`` needs
    stay_id, prediction_time. Codes with no events in the window give NaN (count gives 0).
    """
    unknown = set(aggregations) - set(AGGREGATIONS)
    if unknown:
        raise ValueError(f"unknown aggregation(s) {sorted(unknown)}; choose from {AGGREGATIONS}")
    keys = pl.from_pandas(prediction_times[KEY]).with_columns(pl.col("prediction_time").cast(pl.Datetime("us")))
    lookback = max(windows_hours)
    wanted = pl.from_pandas(events[["stay_id", "time", "arrival_time", "code", "value"]]).with_columns(
        pl.col("time").cast(pl.Datetime("us")), pl.col("arrival_time").cast(pl.Datetime("us")),
        pl.col("stay_id").cast(pl.Int64), pl.col("code").cast(pl.String), pl.col("value").cast(pl.Float64),
    ).filter(pl.col("code").is_in(codes))
    joined = wanted.join(keys, on="stay_id", how="inner").filter(
        (pl.col("time") <= pl.col("prediction_time"))
        & (pl.col("arrival_time") <= pl.col("prediction_time"))
        & (pl.col("time") > pl.col("prediction_time") - pl.duration(hours=lookback))
    ).with_columns(hours=(pl.col("time") - pl.col("prediction_time")).dt.total_seconds() / 3600.0)

    out = keys
    for hours in sorted(set(windows_hours)):
        in_window = joined.filter(pl.col("hours") > -hours)
        long = in_window.group_by([*KEY, "code"]).agg([_aggregate(a) for a in aggregations])
        for aggregation in aggregations:
            wide = long.select([*KEY, "code", aggregation]).pivot(on="code", index=KEY, values=aggregation)
            renamed = {c: feature_name(c, aggregation, hours) for c in wide.columns if c not in KEY}
            out = out.join(wide.rename(renamed), on=KEY, how="left")
    frame = out.to_pandas()
    columns = [feature_name(c, a, h) for h in sorted(set(windows_hours)) for c in codes for a in aggregations]
    frame = frame.reindex(columns=[*KEY, *columns])
    counts = [c for c in columns if "__count_" in c]
    frame[counts] = frame[counts].fillna(0.0)
    frame[columns] = frame[columns].astype("float64")
    frame["prediction_time"] = frame["prediction_time"].astype("datetime64[us]")
    return frame


def static_features(cohort: pd.DataFrame, prediction_times: pd.DataFrame) -> pd.DataFrame:
    """Baseline fields known at admission, plus hours in the ICU at prediction time."""
    static = prediction_times[KEY].merge(
        cohort[["stay_id", "age", "sex", "unit", "admission_type", "admit_time"]], on="stay_id", how="left")
    static["hours_in_icu"] = (static["prediction_time"] - static["admit_time"]).dt.total_seconds() / 3600
    return static.drop(columns=["admit_time"])


def build_features(events: pd.DataFrame, cohort: pd.DataFrame, prediction_times: pd.DataFrame,
                   codes: list[str], windows_hours: list[int], aggregations: list[str]) -> pd.DataFrame:
    """Static plus windowed features, one row per (stay, prediction time)."""
    windowed = window_features(events, prediction_times, codes, windows_hours, aggregations)
    return static_features(cohort, prediction_times).merge(windowed, on=KEY, how="left")
