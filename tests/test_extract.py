"""Extraction from MIMIC-layout source tables into canonical frames, on both backends."""

from datetime import datetime

import pandas as pd
import pytest

from pipeline.sources.mimic import assign_stays, extract, study_datetime, subject_shards

T0 = datetime(2026, 3, 1)


def ts(text):
    return pd.Timestamp(text)


def load(wh, tables):
    with wh.begin() as conn:
        for table, rows in tables.items():
            wh.bulk_insert(conn, table, pd.DataFrame(rows))


@pytest.fixture
def small_icu(any_warehouse):
    """Two stays of one patient and one of another; labs in and out of the ICU."""
    load(any_warehouse, {
        "mimiciv_hosp.patients": [
            {"subject_id": 1, "gender": "F", "anchor_age": 60, "anchor_year": 2024},
            {"subject_id": 2, "gender": "M", "anchor_age": 70, "anchor_year": 2026},
        ],
        "mimiciv_hosp.admissions": [
            {"subject_id": 1, "hadm_id": 11, "admittime": ts("2026-02-01"), "admission_type": "URGENT"},
            {"subject_id": 1, "hadm_id": 12, "admittime": ts("2026-02-20"), "admission_type": "URGENT"},
            {"subject_id": 2, "hadm_id": 21, "admittime": ts("2026-02-27"), "admission_type": "EW EMER."},
        ],
        "mimiciv_icu.icustays": [
            {"subject_id": 1, "hadm_id": 11, "stay_id": 101, "first_careunit": "MICU",
             "intime": ts("2026-02-01 08:00"), "outtime": ts("2026-02-05 08:00")},
            {"subject_id": 1, "hadm_id": 12, "stay_id": 102, "first_careunit": "MICU",
             "intime": ts("2026-02-20 08:00"), "outtime": ts("2026-03-05 08:00")},   # still in at T0
            {"subject_id": 2, "hadm_id": 21, "stay_id": 201, "first_careunit": "SICU",
             "intime": ts("2026-02-27 10:00"), "outtime": None},
            {"subject_id": 2, "hadm_id": 22, "stay_id": 202, "first_careunit": "SICU",
             "intime": ts("2026-03-02 10:00"), "outtime": None},                     # admitted after T0
        ],
        "mimiciv_icu.chartevents": [
            {"subject_id": 2, "stay_id": 201, "itemid": 223761, "charttime": ts("2026-02-28 10:00"),
             "storetime": ts("2026-02-28 10:05"), "value": "98.6", "valuenum": 98.6, "valueuom": "°F"},
            {"subject_id": 2, "stay_id": 201, "itemid": 227969, "charttime": ts("2026-02-28 10:00"),
             "storetime": ts("2026-02-28 10:05"), "value": "Siderails up", "valuenum": None, "valueuom": None},
            {"subject_id": 2, "stay_id": 201, "itemid": 220045, "charttime": ts("2026-02-28 23:50"),
             "storetime": ts("2026-03-01 00:10"), "value": "90", "valuenum": 90.0, "valueuom": "bpm"},  # arrives late
        ],
        "mimiciv_hosp.labevents": [
            {"labevent_id": 1, "subject_id": 1, "itemid": 50813, "charttime": ts("2026-02-21 06:00"),
             "storetime": ts("2026-02-21 07:00"), "value": "2.1", "valuenum": 2.1, "valueuom": "mmol/L"},
            {"labevent_id": 2, "subject_id": 1, "itemid": 50813, "charttime": ts("2026-02-10 06:00"),
             "storetime": ts("2026-02-10 07:00"), "value": "1.0", "valuenum": 1.0, "valueuom": "mmol/L"},  # ward
            {"labevent_id": 3, "subject_id": 2, "itemid": 50912, "charttime": ts("2026-02-27 16:00"),
             "storetime": ts("2026-02-27 17:00"), "value": "1.3", "valuenum": 1.3, "valueuom": "mg/dL"},
            {"labevent_id": 4, "subject_id": 2, "itemid": 50912, "charttime": ts("2026-02-27 06:00"),
             "storetime": ts("2026-02-27 07:00"), "value": "1.2", "valuenum": 1.2, "valueuom": "mg/dL"},  # ED, before the ICU
        ],
    })
    return any_warehouse


def test_cohort_is_a_point_in_time_snapshot(small_icu):
    cohort = extract(small_icu, until=T0).frames["cohort"].set_index("stay_id")
    assert sorted(cohort.index) == [101, 102, 201]           # 202 is admitted after T0
    assert pd.isna(cohort.loc[102, "discharge_time"])        # its outtime is not known yet at T0
    assert cohort.loc[101, "discharge_time"] == ts("2026-02-05 08:00")
    assert cohort.loc[101, "age"] == 62                      # anchor_age + (2026 - anchor_year)


def test_events_are_mapped_converted_assigned_and_excluded_with_reasons(small_icu):
    extraction = extract(small_icu, until=T0)
    events = extraction.frames["events"].set_index("source_row_id")
    temperature = events[events["code"] == "VITAL//temperature"].iloc[0]
    assert temperature["value"] == pytest.approx(37.0)       # 98.6 °F -> °C by the concept map
    assert temperature["unit"] == "°C"
    assert events.loc["labevents/1", "stay_id"] == 102       # assigned by subject and time
    assert events.loc["labevents/3", "stay_id"] == 201       # drawn in the ICU
    reasons = extraction.excluded.set_index("record_id")["reason"].to_dict()
    assert reasons["labevents/2"] == "not during an ICU stay"
    assert reasons["labevents/4"] == "not during an ICU stay"
    assert any(r == "item is not in the concept map" for r in reasons.values())
    assert extraction.records_in("events") == len(events) + len(extraction.excluded)


def test_incremental_windows_follow_arrival_time(small_icu):
    before = extract(small_icu, until=T0)
    assert "VITAL//heart_rate" not in set(before.frames["events"]["code"])   # stored 10 min after T0
    later = extract(small_icu, until=datetime(2026, 3, 2), since={"events": T0})
    assert later.frames["events"]["code"].tolist() == ["VITAL//heart_rate"]


def test_assign_stays_prefers_the_latest_overlapping_stay():
    spans = pd.DataFrame({"stay_id": [1, 2], "subject_id": [5, 5],
                          "admit_time": [ts("2026-01-01"), ts("2026-01-02")],
                          "span_start": [ts("2026-01-01"), ts("2026-01-02")],
                          "span_end": [ts("2026-01-10"), ts("2026-01-03")]})
    rows = pd.DataFrame({"id": ["a", "b"], "subject_id": [5, 5], "time": [ts("2026-01-02 12:00"), ts("2026-01-05")]})
    assert assign_stays(rows, spans, "id").tolist() == [2, 1]


def test_mimic_cxr_study_date_and_time():
    stamps = study_datetime(pd.Series([21800506, 20260301]), pd.Series([213014.531, 5.0]))
    assert stamps.tolist() == [ts("2180-05-06 21:30:14"), ts("2026-03-01 00:00:05")]


@pytest.fixture
def sqlite_warehouse(tmp_path):
    from pipeline.store.warehouse import Warehouse
    from tests.conftest import ROOT

    wh = Warehouse(f"sqlite:///{tmp_path / 'wh' / 'vigil.db'}", ROOT / "sql")
    wh.create_schema()
    yield wh
    wh.dispose()


def test_one_unreadable_raw_value_quarantines_its_row_and_extraction_goes_on(sqlite_warehouse):
    """SQLite stores what a feed writes; each of these once failed extraction for the whole night."""
    wh = sqlite_warehouse
    good = {"subject_id": 2, "stay_id": 201, "itemid": 220045, "storetime": "2026-02-28 12:00:00",
            "value": "90", "valuenum": 90.0, "valueuom": "bpm"}
    load(wh, {
        "mimiciv_hosp.patients": [{"subject_id": 2, "gender": "M", "anchor_age": 70, "anchor_year": 2026},
                                  {"subject_id": 3, "gender": "F", "anchor_age": "old", "anchor_year": 2026}],
        "mimiciv_icu.icustays": [
            {"subject_id": 2, "hadm_id": 21, "stay_id": 201, "intime": "2026-02-27 10:00:00", "outtime": None},
            {"subject_id": 3, "hadm_id": 31, "stay_id": 301, "intime": "2026-02-27 10:00:00", "outtime": None}],
        "mimiciv_icu.chartevents": [
            {**good, "charttime": "2026-02-28 10:00:00"},
            {**good, "charttime": "2026-02-28 10:01:00", "itemid": 1e300},
            {**good, "charttime": "2026-02-28 10:02:00", "subject_id": "inf"},
            {**good, "charttime": "2026-02-28 10:03:00", "stay_id": 9e999},
            {**good, "charttime": "2026-02-28T11:00:00+05"},
            {**good, "charttime": "2026-02-28 11:00:00-05:30"},
            {**good, "charttime": "the day before"},
            {**good, "charttime": "2026-02-28 10:04:00", "valuenum": "ninety"}],
        "mimiciv_cxr.record_list": [{"subject_id": 2, "study_id": 5, "dicom_id": "x", "path": "x.dcm"}],
        "mimiciv_cxr.metadata": [{"dicom_id": "x", "subject_id": 2, "study_id": 5, "studydate": 20260228,
                                  "studytime": float("inf"), "modality": "CR"}],
    })
    before = extract(wh, until=datetime(2026, 2, 28), since={t: datetime(2026, 2, 27) for t in
                                                            ("events", "notes", "ecgs", "images")})
    assert before.records_in("images") == 0  # the image's day is read, but it is the next night's
    extraction = extract(wh, until=T0, since={t: datetime(2026, 2, 28) for t in ("events", "notes", "ecgs", "images")})
    assert len(extraction.frames["events"]) == 1
    reasons = extraction.quarantined.groupby("source_table")["reason"].apply(list).to_dict()
    assert sorted(reasons["events"]) == sorted([
        "itemid is not a whole number", "subject_id is not a whole number", "stay_id is not a whole number",
        *["time in time carries a time-zone offset (times are stored naive, in one clock)"] * 2,
        "time in time is not a date and time", "valuenum holds text where a number belongs"])
    assert reasons["cohort"] == ["anchor_age holds text where a number belongs"]
    assert reasons["images"] == ["study date and time is not a date and time"]
    for table in ("cohort", "events", "images"):  # every row read is accounted for
        assert extraction.records_in(table) == {"cohort": 2, "events": 8, "images": 1}[table]


def _by_id(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    return frame.sort_values([key, *[c for c in frame.columns if c != key]]).reset_index(drop=True)


def test_shards_of_subjects_together_extract_exactly_the_unsharded_rows(any_warehouse, tmp_path, monkeypatch):
    """Every row read once, in exactly one shard: the same canonical rows, exclusions and
    quarantine as one extraction of everything, whether each shard queries its subjects or
    (PostgreSQL) the event tables are read once and split into shard files, which are gone
    afterwards; a subject id that is not a number (SQLite keeps what a feed writes) lands in the
    last shard and is quarantined there."""
    import tempfile

    from pipeline.sources.mimic import ALL_SUBJECTS, extract_in_shards, subject_shards
    from pipeline.synthetic import cohort as synthetic

    wh = any_warehouse
    synthetic.write(wh, synthetic.generate(45, datetime(2026, 1, 1), 12, seed=5, bad_row_rate=0.02),
                    tmp_path / "files", progress=False)
    if wh.is_sqlite:
        load(wh, {"mimiciv_icu.chartevents": [{"subject_id": "inf", "stay_id": None, "itemid": 220045,
                                               "charttime": "2026-01-05 10:00:00", "storetime": "2026-01-05 10:05:00",
                                               "value": "90", "valuenum": 90.0, "valueuom": "bpm"}]})
    until = datetime(2026, 1, 10)
    whole = extract(wh, until=until)
    events = whole.records_in("events")
    shards = subject_shards(wh, until, events // 5)
    assert 5 <= len(shards) <= 7 and shards[0].first is None and shards[-1].end is None
    assert subject_shards(wh, until, None) == [ALL_SUBJECTS]
    spill_root = tmp_path / "spill"
    spill_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill_root))
    queried = [extract(wh, until=until, shard=shard) for shard in shards]
    spilled = []
    for shard, extraction in extract_in_shards(wh, until, events // 5):
        assert wh.is_sqlite or len(list(spill_root.iterdir())) == 1   # the split files, while the shards are read
        spilled.append(extraction)
    assert list(spill_root.iterdir()) == [] and len(spilled) == len(shards)
    for parts in (queried, spilled):
        _assert_shards_extract_the_whole(parts, whole)
    if wh.is_sqlite:
        assert "subject_id is not a whole number" in set(queried[-1].quarantined["reason"])


def _assert_shards_extract_the_whole(parts, whole) -> None:
    from pipeline.validate.checks import RECORD_ID

    for table, key in RECORD_ID.items():
        joined = pd.concat([p.frames[table] for p in parts], ignore_index=True)
        pd.testing.assert_frame_equal(_by_id(joined, key), _by_id(whole.frames[table], key), check_dtype=False)
        assert sum(p.records_in(table) for p in parts) == whole.records_in(table) > 0
    excluded = pd.concat([p.excluded for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(_by_id(excluded, "record_id"), _by_id(whole.excluded, "record_id"))
    quarantined = pd.concat([p.quarantined for p in parts], ignore_index=True)
    count = lambda q: q.groupby(["source_table", "reason"]).size().to_dict()   # noqa: E731
    assert count(quarantined) == count(whole.quarantined)
    named = lambda q: sorted(q.loc[~q["record_id"].str.contains("row-"), "record_id"])   # noqa: E731
    assert named(quarantined) == named(whole.quarantined)


def test_a_training_set_built_shard_by_shard_equals_one_built_from_everything(any_warehouse, tmp_path, monkeypatch):
    """Training reads history in the nightly shards: the same examples, features, sequence
    records, quarantine and snapshot as one read of everything."""
    from dataclasses import replace

    from pipeline.config import load_settings
    from pipeline.modeling.spec import load_spec
    from pipeline.modeling.training_set import training_set
    from pipeline.synthetic import cohort as synthetic

    wh = any_warehouse
    synthetic.write(wh, synthetic.generate(60, datetime(2026, 1, 1), 14, seed=8, bad_row_rate=0.02),
                    tmp_path / "files", progress=False)
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    settings = load_settings()
    spec = load_spec(settings.models_dir / "icu_mortality.yaml")
    as_of = datetime(2026, 1, 15)
    whole = training_set(wh, replace(settings, shard_rows=0), spec, as_of)
    rows = whole.snapshot["rows"]["events"]
    sharded = training_set(wh, replace(settings, shard_rows=rows // 6), spec, as_of)
    assert len(subject_shards(wh, as_of, rows // 6)) >= 5
    pd.testing.assert_frame_equal(sharded.examples, whole.examples)
    pd.testing.assert_frame_equal(sharded.features, whole.features)
    assert set(whole.records) == set(sharded.records) and whole.records
    for modality, records in whole.records.items():
        key = "source_row_id" if "source_row_id" in records else "record_id"
        pd.testing.assert_frame_equal(_by_id(sharded.records[modality], key), _by_id(records, key))
    count = lambda q: q.groupby(["source_table", "reason"]).size().to_dict()   # noqa: E731
    assert count(sharded.quarantine) == count(whole.quarantine) != {}
    named = lambda q: sorted(q.loc[~q["record_id"].str.contains("row-"), "record_id"])   # noqa: E731
    assert named(sharded.quarantine) == named(whole.quarantine)
    assert sharded.snapshot == whole.snapshot
