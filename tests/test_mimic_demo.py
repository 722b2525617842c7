"""The real MIMIC-IV Clinical Database Demo: load, extract, validate and window, on both backends."""

from datetime import datetime

import pandas as pd
import pytest

from pipeline.features.windows import build_features
from pipeline.modeling.spec import load_spec
from pipeline.sources import mimic_demo
from pipeline.sources.mimic import extract, read_enrolment
from pipeline.validate.checks import validate

pytestmark = pytest.mark.shared_data
AS_OF = datetime(2300, 1, 1)  # the demo's dates are shifted into 2110-2210


def test_mimic_demo_loads_and_goes_through_extract_validate_and_features(any_warehouse, shared_data):
    from pipeline.config import PROJECT_ROOT

    loaded = mimic_demo.load(any_warehouse, shared_data / "mimic-iv-demo-2.2", progress=False)
    assert loaded.checksums_verified == 10
    assert loaded.rows["mimiciv_hosp.patients"] == 100
    assert loaded.rows["mimiciv_icu.icustays"] == 140
    assert loaded.rows["mimiciv_hosp.labevents"] == 107_727
    assert loaded.rows["mimiciv_icu.chartevents"] > 600_000     # the MEDS vitals inside ICU stays
    again = mimic_demo.load(any_warehouse, shared_data / "mimic-iv-demo-2.2", progress=False)
    assert any_warehouse.scalar("SELECT COUNT(*) FROM mimiciv_hosp.labevents") == 107_727  # replaced, not doubled
    dictionaries = {"mimiciv_icu.d_items", "mimiciv_hosp.d_labitems"}
    assert {t: n for t, n in again.rows.items() if t not in dictionaries} == \
        {t: n for t, n in loaded.rows.items() if t not in dictionaries}
    assert all(again.rows[t] == 0 for t in dictionaries)  # dictionary rows are merged, not duplicated

    # antimicrobials, cultures, infusions and the charted SOFA inputs through the Sepsis-3 query:
    # some stays, not all, each enrolled during its ICU stay
    assert (loaded.rows["mimiciv_hosp.prescriptions"], loaded.rows["mimiciv_hosp.microbiologyevents"],
            loaded.rows["mimiciv_icu.inputevents"]) == (18_087, 2_899, 20_404)
    enrolled = read_enrolment(any_warehouse, "cohort_sepsis3", AS_OF).merge(
        any_warehouse.read("SELECT stay_id, intime, outtime FROM mimiciv_icu.icustays", times=("intime", "outtime")),
        on="stay_id")
    assert 20 <= len(enrolled) <= 100, len(enrolled)     # of 140 stays; MIMIC-IV's own rate is about a third
    assert (enrolled["enrolled_time"] >= enrolled["intime"]).all()
    assert (enrolled["enrolled_time"] <= enrolled["outtime"] + pd.Timedelta(hours=1)).all()

    extraction = extract(any_warehouse, until=AS_OF)
    outcome = validate(extraction.frames, AS_OF)
    events = outcome.tables["events"]
    reasons = set(events.quarantine["reason"])
    # real oddities of the demo: non-numeric values, impossible physiology (e.g. 99 "°C"), units
    assert "value is empty or not numeric" in reasons
    assert {"above the physiologically possible range", "below the physiologically possible range"} & reasons
    assert 0 < events.failure_rate < 0.2
    excluded = extraction.excluded.groupby(["table", "reason"]).size()
    assert excluded[("events", "not during an ICU stay")] > 10_000   # ward and outpatient labs
    assert excluded[("events", "item is not in the concept map")] > 100_000
    for table in ("cohort", "events"):
        result = outcome.tables[table]
        assert extraction.records_in(table) == (len(result.valid) + result.quarantine["record_id"].nunique()
                                               + len(result.duplicates)
                                               + int((extraction.excluded["table"] == table).sum()))

    cohort = outcome.valid("cohort")
    assert len(cohort) == 140
    spec = load_spec(PROJECT_ROOT / "models" / "icu_mortality.yaml")
    times = cohort[["stay_id", "admit_time"]].assign(prediction_time=lambda f: f["admit_time"] + pd.Timedelta(hours=24))
    features = build_features(outcome.valid("events"), cohort, times[["stay_id", "prediction_time"]], spec.window_spec)
    assert len(features) == 140
    assert features["vital_heart_rate__mean_24h"].between(20, 250).mean() > 0.8
    assert features["lab_creatinine__last_24h"].notna().mean() > 0.5
