"""Great Expectations validation: every kind of bad row gets its reason; thresholds fail loudly."""

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from pipeline.frames import conform, empty
from pipeline.validate.checks import DataQualityError, enforce_thresholds, validate

UNTIL = datetime(2026, 3, 1)


def cohort(**overrides):
    rows = [{"stay_id": 1, "subject_id": 10, "hadm_id": 100, "admit_time": "2026-02-27", "discharge_time": None,
             "unit": "MICU", "age": 60, "sex": "F", "admission_type": "URGENT"},
            {"stay_id": 2, "subject_id": 20, "hadm_id": 200, "admit_time": "2026-02-27", "discharge_time": None,
             "unit": "MICU", "age": -3, "sex": "M", "admission_type": "URGENT"},          # impossible age
            {"stay_id": 3, "subject_id": 30, "hadm_id": 300, "admit_time": "2026-02-27",
             "discharge_time": "2026-02-26", "unit": "MICU", "age": 50, "sex": "X",
             "admission_type": "URGENT"}]                                                  # two problems
    return conform(pd.DataFrame(rows), "cohort")


_minute = iter(range(10_000))


def event(row_id, **values):
    """A valid heart-rate row at its own minute (so rows do not conflict unless a test says so)."""
    minute = next(_minute)
    base = {"source_table": "mimiciv_icu.chartevents", "source_row_id": row_id, "stay_id": 1, "subject_id": 10,
            "time": f"2026-02-28 {minute // 60 % 24:02d}:{minute % 60:02d}", "arrival_time": "2026-02-28 23:59", "itemid": 220045,
            "code": "VITAL//heart_rate", "value": 80.0, "value_text": "80", "source_unit": "bpm",
            "expected_unit": "bpm", "unit": "bpm", "lower_bound": 0.0, "upper_bound": 300.0, "lower_exclusive": False}
    return {**base, **values}


def frames(events):
    return {"cohort": cohort(), "events": conform(pd.DataFrame(events), "events"),
            "notes": empty("notes"), "ecgs": empty("ecgs"), "images": empty("images")}


def reasons_by_record(outcome, table):
    q = outcome.tables[table].quarantine
    return q.groupby("record_id")["reason"].apply(set).to_dict()


def test_cohort_rows_are_quarantined_with_every_reason():
    outcome = validate(frames([event("ok")]), UNTIL)
    reasons = reasons_by_record(outcome, "cohort")
    assert reasons["2"] == {"age outside 0-120 years"}
    assert reasons["3"] == {"sex is not F or M", "discharged before admission"}
    assert outcome.valid("cohort")["stay_id"].tolist() == [1]


def test_each_kind_of_bad_event_is_quarantined_with_its_reason():
    events = [
        event("ok"),
        event("non_numeric", value=np.nan, value_text="___"),
        event("impossible", value=999.0),
        event("negative", value=-5.0),
        event("unit", source_unit="mmHg"),
        event("future", time="2026-03-02 10:00"),                     # arrived 2026-02-28
        event("orphan", stay_id=99),
        event("no_stay", stay_id=None),
        event("quarantined_stay", stay_id=2),             # its stay failed validation
        event("conflict_a", time="2026-02-28 11:00", value=70.0, value_text="70"),
        event("conflict_b", time="2026-02-28 11:00", value=72.0, value_text="72"),
    ]
    outcome = validate(frames(events), UNTIL)
    reasons = reasons_by_record(outcome, "events")
    assert reasons["non_numeric"] == {"value is empty or not numeric"}
    assert reasons["impossible"] == {"above the physiologically possible range"}
    assert reasons["negative"] == {"below the physiologically possible range"}
    assert reasons["unit"] == {"unit differs from the concept map's unit"}
    assert reasons["future"] == {"charted after the night it arrived in"}
    assert reasons["orphan"] == {"stay is not in the validated cohort"}
    assert "no ICU stay for this row" in reasons["no_stay"]
    assert reasons["quarantined_stay"] == {"stay is not in the validated cohort"}
    assert reasons["conflict_a"] == reasons["conflict_b"] == {"conflicting values for the same item and time"}
    assert outcome.valid("events")["source_row_id"].tolist() == ["ok"]
    dq = outcome.tables["events"].dq
    assert set(dq["expectation"]) >= {"expect_column_values_to_not_be_null", "expect_compound_columns_to_be_unique"}
    assert (dq["element_count"] == len(events)).all()


def test_exact_duplicates_are_excluded_not_quarantined():
    outcome = validate(frames([event("a", time="2026-02-28 09:00"), event("a#1", time="2026-02-28 09:00")]), UNTIL)
    result = outcome.tables["events"]
    assert len(result.valid) == 1 and len(result.duplicates) == 1 and result.quarantine.empty


def test_notes_without_text_are_quarantined():
    notes = conform(pd.DataFrame([
        {"record_id": "n1", "stay_id": 1, "subject_id": 10, "time": "2026-02-28", "arrival_time": "2026-02-28",
         "category": "RR", "text": "Portable chest."},
        {"record_id": "n2", "stay_id": 1, "subject_id": 10, "time": "2026-02-28", "arrival_time": "2026-02-28",
         "category": "RR", "text": ""},
        {"record_id": "n3", "stay_id": 1, "subject_id": 10, "time": "2026-02-28", "arrival_time": "2026-02-28",
         "category": "RR", "text": " \n\t "},
        {"record_id": "n4", "stay_id": 1, "subject_id": 10, "time": "2026-02-28", "arrival_time": "2026-02-28",
         "category": "RR", "text": "GIF89a\x01\x00\x01\x00\x80\xff\x00\x00\x00\x00\x00\x00!\xf9\x04"},
        {"record_id": "n5", "stay_id": 1, "subject_id": 10, "time": "2026-02-28", "arrival_time": "2026-02-28",
         "category": "RR", "text": "Impression: \ufffd\ufffd\ufffd\ufffd no acute process"},
        {"record_id": "n6", "stay_id": 1, "subject_id": 10, "time": "2026-02-28", "arrival_time": "2026-02-28",
         "category": "RR", "text": "Fièvre à 39 °C, SpO₂ 91 %, µg/kg/min, naïve — ok.\r\n"},
    ]), "notes")
    outcome = validate({**frames([event("ok")]), "notes": notes}, UNTIL)
    assert reasons_by_record(outcome, "notes") == {
        "n2": {"note text is empty or longer than 200,000 characters", "note text is blank"},
        "n3": {"note text is blank"},
        "n4": {"note text is binary or was not decodable"},
        "n5": {"note text is binary or was not decodable"},
    }


def test_failure_rate_above_the_limit_stops_the_night_naming_the_table():
    events = [event(f"bad{i}", value=np.nan) for i in range(3)] + [event("ok")]
    outcome = validate(frames(events), UNTIL)
    with pytest.raises(DataQualityError, match=r"events: 75\.0% of 4 rows failed validation \(limit 50%\).*"
                                               r"3 x value is empty or not numeric"):
        enforce_thresholds(outcome, lambda table: 0.5 if table == "events" else 1.0)
    enforce_thresholds(outcome, lambda table: 1.0)  # under the limit: passes


def test_the_brake_needs_enough_quarantined_rows_so_one_bad_row_never_stops_a_small_night():
    outcome = validate(frames([event("ok"), event("impossible", value=999.0)]), UNTIL)
    enforce_thresholds(outcome, lambda table: 0.25, min_rows=10)  # half the rows, but one row
    with pytest.raises(DataQualityError, match="events: 50.0% of 2 rows"):
        enforce_thresholds(outcome, lambda table: 0.25, min_rows=1)
