"""Window features on tiny frames whose expected values are worked out by hand, plus the
properties the pipeline relies on: no leakage, order and shard invariance, exact incremental."""

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from pipeline.features.incremental import advance, edge_ranges, stays_to_recompute
from pipeline.features.windows import (AGGREGATIONS, WindowSpec, build_features, feature_name, sequence_features,
                                       window_features)

PT = pd.Timestamp("2026-03-01 00:00")
HR, LAC = "VITAL//heart_rate", "LAB//lactate"


def events(rows):
    frame = pd.DataFrame(rows, columns=["stay_id", "time", "arrival_time", "code", "value"])
    for column in ("time", "arrival_time"):
        frame[column] = pd.to_datetime(frame[column], format="ISO8601").astype("datetime64[us]")
    return frame


def at(stays, when=PT):
    return pd.DataFrame({"stay_id": stays, "prediction_time": pd.Series([when] * len(stays)).astype("datetime64[us]")})


def same(time):  # arrives when charted
    return (time, time)


HISTORY = [  # heart rate of stay 1: 500 bpm 28 h before PT, then 80 / 90 / 100 in the last 24 h
    (1, *same("2026-02-27 20:00"), HR, 500.0),
    (1, *same("2026-02-28 04:00"), HR, 80.0),
    (1, *same("2026-02-28 14:00"), HR, 90.0),
    (1, *same("2026-02-28 22:00"), HR, 100.0),
]


def test_every_aggregation_matches_hand_computation():
    spec = WindowSpec(codes=(HR,), lookbacks=(6, 24, None))
    out = window_features(events(HISTORY), at([1]), spec).iloc[0]
    f = lambda agg, hours: out[feature_name(HR, agg, hours)]  # noqa: E731
    # 24 h window: 80 @ 04:00, 90 @ 14:00, 100 @ 22:00 -> x = 0, 10, 18 h since the first
    x, y = np.array([0.0, 10.0, 18.0]), np.array([80.0, 90.0, 100.0])
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    assert (f("min", 24), f("max", 24), f("mean", 24), f("first", 24), f("last", 24)) == (80, 100, 90, 80, 100)
    assert f("std", 24) == pytest.approx(10.0) and f("count", 24) == 3 and f("delta", 24) == 20
    assert f("slope", 24) == pytest.approx(slope)
    assert f("since_last", 24) == 120 and f("missing", 24) == 0   # minutes since 22:00
    # 6 h window: only 100 @ 22:00; a single point has no slope or std
    assert f("count", 6) == 1 and f("mean", 6) == 100 and np.isnan(f("slope", 6)) and np.isnan(f("std", 6))
    # whole stay: includes the 500 from 28 h before
    assert f("count", None) == 4 and f("max", None) == 500 and f("first", None) == 500


def test_empty_windows_give_nan_zero_count_and_a_missing_flag():
    spec = WindowSpec(codes=(HR, LAC), lookbacks=(6, 24), aggregations=("mean", "count", "since_last"))
    out = window_features(events(HISTORY), at([1, 2]), spec)
    assert list(out.columns) == ["stay_id", "prediction_time"] + spec.columns()
    lactate = out[[feature_name(LAC, a, 24) for a in ("mean", "count", "since_last", "missing")]].to_numpy()
    assert np.isnan(lactate[:, 0]).all() and (lactate[:, 1] == 0).all() and np.isnan(lactate[:, 2]).all()
    assert (lactate[:, 3] == 1).all()
    assert out.loc[1, feature_name(HR, "missing", 24)] == 1   # stay 2 has no events at all


def test_a_future_event_never_reaches_a_feature():
    spec = WindowSpec(codes=(HR,), lookbacks=(24, None))
    planted = HISTORY + [
        (1, "2026-03-01 00:30", "2026-03-01 00:31", HR, 250.0),   # charted after the prediction time
        (1, "2026-02-28 23:00", "2026-03-01 02:00", HR, 250.0),   # charted before, stored after
    ]
    pd.testing.assert_frame_equal(window_features(events(HISTORY), at([1]), spec),
                                  window_features(events(planted), at([1]), spec))


def test_each_key_uses_its_own_prediction_time():
    spec = WindowSpec(codes=(HR,), lookbacks=(24,), aggregations=("count",))
    keys = pd.concat([at([1]), at([1], pd.Timestamp("2026-02-28 10:00"))], ignore_index=True)
    out = window_features(events(HISTORY), keys, spec)
    assert out[feature_name(HR, "count", 24)].tolist() == [3, 2]   # 20:00 (prev day) and 04:00


def test_results_do_not_depend_on_row_order_or_sharding():
    rng = np.random.default_rng(0)
    n = 4000
    frame = events([])
    frame = pd.DataFrame({
        "stay_id": rng.integers(1, 60, n),
        "time": PT - pd.to_timedelta(rng.integers(0, 80 * 3600, n), unit="s"),
        "code": rng.choice([HR, LAC], n), "value": rng.normal(80, 10, n).round(1),
    })
    frame["arrival_time"] = frame["time"] + pd.Timedelta(minutes=5)
    spec = WindowSpec(codes=(HR, LAC), lookbacks=(6, 24, None))
    keys = at(list(range(1, 60)))
    reference = window_features(frame, keys, spec)
    shuffled = window_features(frame.sample(frac=1, random_state=1), keys, spec, shard_stays=7)
    pd.testing.assert_frame_equal(reference, shuffled, check_exact=True)


def _direct(frame: pd.DataFrame, stay: int, when: pd.Timestamp, code: str, hours) -> dict:
    """Every aggregation of one window computed from its rows alone, the plain way."""
    rows = frame[(frame["stay_id"] == stay) & (frame["code"] == code) & (frame["time"] <= when)
                 & (frame["arrival_time"] <= when)]
    if hours is not None:
        rows = rows[(when - rows["time"]) < pd.Timedelta(hours=hours)]
    rows = rows.sort_values(["time", "value"])
    v, n = rows["value"].to_numpy(), len(rows)
    x = (rows["time"] - when).dt.total_seconds().to_numpy() / 3600
    if n == 0:
        return {"count": 0.0, "sum": np.nan}
    slope = np.polyfit(x, v, 1)[0] if n > 1 and np.ptp(x) > 0 else np.nan
    return {"min": v.min(), "max": v.max(), "mean": v.mean(), "std": v.std(ddof=1) if n > 1 else np.nan,
            "first": v[0], "last": v[-1], "count": float(n), "slope": slope, "delta": v[-1] - v[0],
            "since_last": float(((when - rows["time"].iloc[-1]).total_seconds()) // 60), "sum": v.sum()}


def test_every_window_equals_its_direct_computation_with_several_prediction_times_per_stay():
    """The one-pass engine aggregates each event once per age bucket and merges buckets into
    windows: each window must still be exactly the aggregate of its own rows (ties in time
    included, lookbacks in any order, events without a value left out)."""
    rng = np.random.default_rng(5)
    n = 3000
    frame = pd.DataFrame({
        "stay_id": rng.integers(1, 25, n),
        "time": PT - pd.to_timedelta(rng.integers(0, 100, n) * 1800, unit="s"),   # half hours: many ties
        "code": rng.choice([HR, LAC], n), "value": rng.normal(80, 10, n).round(0),
    })
    frame["arrival_time"] = frame["time"] + pd.to_timedelta(rng.integers(0, 4, n), unit="h")
    frame.loc[rng.choice(n, 30, replace=False), "value"] = np.nan
    keys = pd.concat([at(list(range(1, 25))), at(list(range(1, 25)), PT - pd.Timedelta(hours=9, minutes=20))],
                     ignore_index=True)
    spec = WindowSpec(codes=(HR, LAC), lookbacks=(24, 6, None, 72), aggregations=AGGREGATIONS)
    out = window_features(frame, keys, spec)
    valued = frame.dropna(subset=["value"])
    for row in out.itertuples(index=False):
        for code in (HR, LAC):
            for hours in spec.lookbacks:
                expected = _direct(valued, row.stay_id, row.prediction_time, code, hours)
                for aggregation in AGGREGATIONS:
                    got = getattr(row, feature_name(code, aggregation, hours))
                    want = expected.get(aggregation, np.nan)
                    assert got == pytest.approx(want, rel=1e-9, abs=1e-9, nan_ok=True), \
                        (row.stay_id, row.prediction_time, code, hours, aggregation)


def test_a_constant_series_has_exactly_zero_spread_and_slope():
    rows = [(1, *same(f"2026-02-28 {h:02d}:00"), HR, 97.3) for h in range(0, 24, 3)]
    spec = WindowSpec(codes=(HR,), lookbacks=(12, 24), aggregations=("std", "slope", "mean"))
    out = window_features(events(rows), at([1]), spec).iloc[0]
    for hours in (12, 24):
        assert out[feature_name(HR, "std", hours)] == 0.0 and out[feature_name(HR, "slope", hours)] == 0.0
        assert out[feature_name(HR, "mean", hours)] == 97.3


def test_unknown_aggregation_and_bad_lookbacks_are_rejected():
    with pytest.raises(ValueError, match="unknown aggregation"):
        WindowSpec(codes=(HR,), aggregations=("median",))
    with pytest.raises(ValueError, match="lookbacks"):
        WindowSpec(codes=(HR,), lookbacks=(0,))
    assert "since_last" in AGGREGATIONS and "delta" in AGGREGATIONS


def test_sequence_features_are_tumbling_windows_oldest_first():
    values, mask = sequence_features(events(HISTORY), at([1, 2]), [HR, LAC], window_hours=12, windows=4)
    assert values.shape == (2, 4, 2) and mask.shape == (2, 4)
    # windows end at PT: [00-12h) holds 100 @ 22:00 and 90 @ 14:00; [12-24h) 80 @ 04:00; [24-36h) 500
    np.testing.assert_array_equal(values[0, :, 0], [np.nan, 500.0, 80.0, 95.0])
    np.testing.assert_array_equal(mask[0], [False, True, True, True])
    assert not mask[1].any() and np.isnan(values[:, :, 1]).all()
    with pytest.raises(ValueError, match="sequence aggregation"):
        sequence_features(events(HISTORY), at([1]), [HR], aggregation="slope")


def test_static_features_join_baseline_fields():
    cohort = pd.DataFrame({"stay_id": [1], "age": [70.0], "sex": ["F"], "unit": ["MICU"], "admission_type": ["URGENT"],
                           "admit_time": pd.to_datetime(["2026-02-28 12:00"], format="ISO8601").astype("datetime64[us]")})
    out = build_features(events([]), cohort, at([1]), WindowSpec(codes=(HR,), aggregations=("mean",)))
    assert out.loc[0, "age"] == 70 and out.loc[0, "sex"] == "F" and out.loc[0, "hours_in_icu"] == 12


def test_incremental_night_equals_a_full_recomputation_exactly():
    rng = np.random.default_rng(5)
    t0, t1 = datetime(2026, 3, 1), datetime(2026, 3, 2)
    n = 6000
    stay = rng.integers(1, 40, n)
    # stays 30-39 were discharged days ago: all their events are older than every finite window;
    # stays 20-29 were discharged about two days ago: their events leave the 72 h window tonight
    hours_ago = np.select([stay >= 30, stay >= 20], [rng.uniform(97, 150, n), rng.uniform(49, 70, n)],
                          rng.uniform(0.02, 100, n))
    stored = pd.DataFrame({"stay_id": stay, "time": (pd.Timestamp(t0) - pd.to_timedelta(hours_ago, unit="h")).floor("s"),
                           "code": rng.choice([HR, LAC], n), "value": rng.normal(80, 10, n).round(1)})
    stored["arrival_time"] = stored["time"]
    # tonight: new events for stays 1-9 only
    fresh = pd.DataFrame({"stay_id": rng.integers(1, 10, 300),
                          "time": pd.Timestamp(t0) + pd.to_timedelta(rng.integers(1, 86400, 300), unit="s"),
                          "code": rng.choice([HR, LAC], 300), "value": rng.normal(80, 10, 300).round(1)})
    fresh["arrival_time"] = fresh["time"]
    spec = WindowSpec(codes=(HR, LAC), lookbacks=(6, 24, 72, None))
    stays = list(range(1, 45))   # 40-44 are new tonight
    previous = window_features(stored, at(stays[:39], pd.Timestamp(t0)), spec)
    everything = pd.concat([stored, fresh], ignore_index=True)
    full = window_features(everything, at(stays, pd.Timestamp(t1)), spec)

    fetched = []

    def fetch(ids, since):
        fetched.append((len(ids), since))
        rows = everything[everything["stay_id"].isin(ids)]
        return rows if since is None else rows[rows["time"] > since]

    edges = np.concatenate([stored.loc[(stored["time"] > low) & (stored["time"] <= high), "stay_id"].to_numpy()
                            for low, high in edge_ranges(spec, t0, t1)])
    features, counts = advance(previous, stays, fresh["stay_id"], edges, fetch, spec, t0, t1)
    pd.testing.assert_frame_equal(features, full, check_exact=True)
    recompute = stays_to_recompute(stays, fresh["stay_id"], edges, previous)
    assert set(range(40, 45)) <= recompute and not recompute & set(range(30, 40))
    assert counts["recomputed"] == len(recompute) and counts["carried_forward"] == len(stays) - len(recompute)
    assert fetched == [(len(recompute), None)]   # one fetch, of the recomputed stays' events
    first_night, _ = advance(None, stays[:39], [], [], lambda ids, since: stored, spec, t0, t0)
    pd.testing.assert_frame_equal(first_night, previous, check_exact=True)
