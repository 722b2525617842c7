"""Window features on tiny frames whose expected values are worked out by hand."""

import numpy as np
import pandas as pd
import pytest

from pipeline.features.windows import build_features, feature_name, window_features

PT = pd.Timestamp("2026-03-01 00:00")


def events(rows):
    frame = pd.DataFrame(rows, columns=["stay_id", "time", "arrival_time", "code", "value"])
    frame["time"] = pd.to_datetime(frame["time"]).astype("datetime64[us]")
    frame["arrival_time"] = pd.to_datetime(frame["arrival_time"]).astype("datetime64[us]")
    return frame


def at(stays, when=PT):
    return pd.DataFrame({"stay_id": stays, "prediction_time": pd.Series([when] * len(stays)).astype("datetime64[us]")})


HR = "VITAL//heart_rate"
AGGS = ["min", "max", "mean", "std", "last", "count", "slope"]


def test_aggregates_match_hand_computation():
    # heart rate 80 at -20 h, 90 at -10 h, 100 at -2 h: slope is 20 bpm over 18 h ... least squares:
    # hours x = -20, -10, -2 (mean -32/3), values y = 80, 90, 100 (mean 90)
    rows = [(1, "2026-02-28 04:00", "2026-02-28 04:00", HR, 80.0),
            (1, "2026-02-28 14:00", "2026-02-28 14:00", HR, 90.0),
            (1, "2026-02-28 22:00", "2026-02-28 22:00", HR, 100.0),
            (1, "2026-02-27 20:00", "2026-02-27 20:00", HR, 500.0)]   # 28 h before: outside the 24 h window
    out = window_features(events(rows), at([1]), [HR], [24], AGGS).iloc[0]
    x, y = np.array([-20.0, -10.0, -2.0]), np.array([80.0, 90.0, 100.0])
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    assert out[feature_name(HR, "min", 24)] == 80
    assert out[feature_name(HR, "max", 24)] == 100
    assert out[feature_name(HR, "mean", 24)] == 90
    assert out[feature_name(HR, "std", 24)] == pytest.approx(10.0)
    assert out[feature_name(HR, "last", 24)] == 100
    assert out[feature_name(HR, "count", 24)] == 3
    assert out[feature_name(HR, "slope", 24)] == pytest.approx(slope)


def test_a_future_event_never_reaches_a_feature():
    base = [(1, "2026-02-28 10:00", "2026-02-28 10:00", HR, 80.0)]
    planted = base + [
        (1, "2026-03-01 00:30", "2026-03-01 00:31", HR, 250.0),   # charted after the prediction time
        (1, "2026-02-28 23:00", "2026-03-01 02:00", HR, 250.0),   # charted before, but stored after
    ]
    clean = window_features(events(base), at([1]), [HR], [24], AGGS)
    leaked = window_features(events(planted), at([1]), [HR], [24], AGGS)
    pd.testing.assert_frame_equal(clean, leaked)


def test_each_stay_uses_its_own_prediction_time():
    rows = [(1, "2026-02-28 10:00", "2026-02-28 10:00", HR, 80.0), (2, "2026-02-28 10:00", "2026-02-28 10:00", HR, 80.0)]
    keys = pd.concat([at([1]), at([2], pd.Timestamp("2026-02-28 09:00"))], ignore_index=True)
    out = window_features(events(rows), keys, [HR], [24], ["count"]).set_index("stay_id")
    assert out.loc[1, feature_name(HR, "count", 24)] == 1
    assert out.loc[2, feature_name(HR, "count", 24)] == 0   # its event is after its prediction time


def test_missing_codes_give_nan_and_zero_counts_with_stable_columns():
    out = window_features(events([]), at([1, 2]), [HR, "LAB//lactate"], [6, 24], ["mean", "count"])
    assert list(out.columns) == ["stay_id", "prediction_time"] + [
        feature_name(c, a, h) for h in (6, 24) for c in (HR, "LAB//lactate") for a in ("mean", "count")]
    assert out[feature_name(HR, "mean", 24)].isna().all()
    assert (out[feature_name(HR, "count", 6)] == 0).all()


def test_unknown_aggregation_is_rejected():
    with pytest.raises(ValueError, match="unknown aggregation"):
        window_features(events([]), at([1]), [HR], [24], ["median"])


def test_static_features_join_baseline_fields():
    cohort = pd.DataFrame({"stay_id": [1], "age": [70.0], "sex": ["F"], "unit": ["MICU"], "admission_type": ["URGENT"],
                           "admit_time": pd.to_datetime(["2026-02-28 12:00"], format="ISO8601").astype("datetime64[us]")})
    out = build_features(events([]), cohort, at([1]), [HR], [24], ["mean"])
    assert out.loc[0, "age"] == 70 and out.loc[0, "sex"] == "F"
    assert out.loc[0, "hours_in_icu"] == 12
