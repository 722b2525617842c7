"""PhysioNet 2019 through the MIMIC-shaped warehouse: hourly records, sepsis onsets and the
nightly next-24 h sepsis examples, on the copy of training set A in ``data/physionet2019``."""

from __future__ import annotations

import tarfile
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.config import PROJECT_ROOT, load_settings
from pipeline.modeling.evaluation import cross_validate
from pipeline.modeling.spec import load_spec
from pipeline.modeling.training_set import labelled_examples, read_outcomes
from pipeline.sources import physionet2019
from pipeline.sources.mimic import extract
from pipeline.validate.checks import validate
from pipeline.store.warehouse import connect

ARCHIVE = PROJECT_ROOT / "data" / "physionet2019" / "training_setA_p000001-p009893.tar.xz"
SPEC = PROJECT_ROOT / "models" / "physionet" / "physionet2019_sepsis.yaml"


def _first_records(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(ARCHIVE) as tar:
        for member in tar:
            if member.name.endswith(".psv"):
                (folder / Path(member.name).name).write_bytes(tar.extractfile(member).read())
                count -= 1
                if count == 0:
                    break
    return folder


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("physionet2019")
    raw = yaml.safe_load(SPEC.read_text())
    raw["candidates"][0]["params"] |= {"n_estimators": 120, "learning_rate": 0.1, "calibration_folds": 3}
    (root / "models").mkdir()
    (root / "models" / SPEC.name).write_text(yaml.safe_dump(raw))
    settings = load_settings({"VIGIL_HOME": str(root / "home"), "VIGIL_MODELS_DIR": str(root / "models")})
    wh = connect(settings)
    wh.create_schema()
    records = _first_records(root / "records", 1500)
    loaded = physionet2019.load(wh, records, progress=False)
    return settings, wh, records, loaded


def test_hourly_rows_land_at_the_end_of_their_hour_and_onsets_are_six_hours_after_the_first_label(home):
    settings, wh, records, loaded = home
    assert loaded.stays == 1500 and loaded.septic > 10
    rows, _ = physionet2019.read_records(records)
    stays = wh.read("SELECT stay_id, intime, outtime FROM mimiciv_icu.icustays", times=("intime", "outtime")).set_index("stay_id")
    heart = wh.read("SELECT subject_id, charttime, valuenum FROM mimiciv_icu.chartevents WHERE itemid = 220045",
                    times=("charttime",))
    assert len(heart) == int(rows["HR"].notna().sum())
    one = rows[rows["HR"].notna()].iloc[0]
    at = stays.loc[one["record_id"], "intime"] + pd.Timedelta(hours=one["ICULOS"])
    assert heart[(heart["subject_id"] == one["record_id"]) & (heart["charttime"] == at)]["valuenum"].tolist() == [one["HR"]]
    assert (stays["outtime"] - stays["intime"] == pd.to_timedelta(rows.groupby("record_id")["ICULOS"].max()
                                                                   .reindex(stays.index), unit="h")).all()
    onsets = wh.read("SELECT stay_id, event_time FROM vigil_features.outcome_events", times=("event_time",)).set_index("stay_id")
    first_label = rows[rows["SepsisLabel"] == 1].groupby("record_id")["ICULOS"].min()
    assert sorted(onsets.index) == sorted(first_label.index)
    expected = stays.loc[first_label.index, "intime"] + pd.to_timedelta(first_label + 6, unit="h")
    assert (onsets.loc[first_label.index, "event_time"] == expected).all()


def test_nightly_examples_stop_at_onset_and_label_onset_within_24_hours(home):
    settings, wh, _, _ = home
    spec = load_spec(settings.models_dir / SPEC.name)
    cohort = validate(extract(wh, until=datetime(2100, 1, 1)).frames, datetime(2100, 1, 1)).valid("cohort")
    examples = labelled_examples(cohort, spec, *read_outcomes(wh, spec, datetime(2100, 1, 1)))
    onsets = wh.read("SELECT stay_id, event_time FROM vigil_features.outcome_events", times=("event_time",))
    joined = examples.drop(columns=["event_time"]).merge(onsets, on="stay_id", how="left")
    assert (joined["prediction_time"] == joined["prediction_time"].dt.floor("D")).all()        # midnights
    assert ((joined["prediction_time"] > joined["admit_time"]) & (joined["prediction_time"] < joined["discharge_time"])).all()
    assert not (joined["event_time"] <= joined["prediction_time"]).any()                      # never after onset
    within = joined["event_time"] <= joined["prediction_time"] + pd.Timedelta(hours=24)
    assert (joined["label"] == within.astype(int)).all() and 0 < joined["label"].sum() < len(joined)


def test_cross_validation_of_the_sepsis_spec_reports_the_model_and_its_logistic_baseline(home):
    settings, wh, _, _ = home
    evaluation = cross_validate(wh, settings, load_spec(settings.models_dir / SPEC.name), folds=3)
    results = evaluation.report["results"]
    assert {"xgboost_tabular", "logistic_baseline"} <= set(results)
    assert results["xgboost_tabular"]["auroc"] > 0.6 and "calibration_slope" in results["xgboost_tabular"]
