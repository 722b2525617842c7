"""PhysioNet 2012 through the MIMIC-shaped warehouse: the loader, extraction accounting,
cross-validation and evaluation of a promoted model on records it never saw.

Uses the copy of set A in ``data/physionet2012`` (ODC-By 1.0), so it runs from a plain clone.
"""

from __future__ import annotations

import tarfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.config import PROJECT_ROOT, load_settings
from pipeline.modeling import registry
from pipeline.modeling.evaluation import cross_validate, evaluate_source
from pipeline.modeling.metrics import calibration
from pipeline.modeling.spec import load_spec
from pipeline.nightly import run_night
from pipeline.sources import physionet2012
from pipeline.sources.mimic import extract
from pipeline.validate.checks import validate
from pipeline.store.warehouse import connect

DATA = PROJECT_ROOT / "data" / "physionet2012"
SPEC = PROJECT_ROOT / "models" / "physionet" / "physionet2012_mortality.yaml"


def _subset(archive: Path, folder: Path, first: int, count: int) -> Path:
    """Record files ``first .. first+count`` of the archive (in name order), unpacked."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(".txt")]
        chosen = {m.name for m in sorted(members, key=lambda m: m.name)[first:first + count]}
        for member in members:  # archive order: an xz stream cannot seek back cheaply
            if member.name in chosen:
                (folder / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    return folder


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("physionet2012")
    return {"train": _subset(DATA / "set-a.tar.xz", root / "train", 0, 900),
            "unseen": _subset(DATA / "set-a.tar.xz", root / "unseen", 3000, 400)}


def _home(tmp_path: Path, name: str):
    """A home whose models folder holds the spec with fewer, faster trees (the tests check
    behaviour; the accuracy figures come from ``vigil cross-validate`` on all of set A)."""
    raw = yaml.safe_load(SPEC.read_text())
    for candidate in raw["candidates"]:
        if candidate["kind"] == "xgboost":
            candidate["params"] |= {"n_estimators": 150, "learning_rate": 0.08, "calibration_folds": 3}
    models = tmp_path / name / "models"
    models.mkdir(parents=True)
    (models / SPEC.name).write_text(yaml.safe_dump(raw))
    settings = load_settings({"VIGIL_HOME": str(tmp_path / name), "VIGIL_MODELS_DIR": str(models)})
    wh = connect(settings)
    wh.create_schema()
    return settings, wh


def _spec(settings):
    return load_spec(settings.models_dir / SPEC.name)


def test_records_land_in_the_mimic_tables_with_mimic_items_and_units(tmp_path):
    folder = _subset(DATA / "set-a.tar.xz", tmp_path / "few", 0, 20)
    settings, wh = _home(tmp_path, "load")
    loaded = physionet2012.load(wh, folder, DATA / "Outcomes-a.txt", progress=False)
    assert loaded.stays == 20
    raw = physionet2012.read_records(folder).rows
    chart = wh.read("SELECT * FROM mimiciv_icu.chartevents")
    heart = chart[chart["itemid"] == 220045]
    assert len(heart) == int((raw["parameter"] == "HR").sum())
    fio2 = chart.loc[chart["itemid"] == 223835, "valuenum"]
    assert fio2.empty or fio2.min() >= 21            # fraction in the file, % in MIMIC
    urine = wh.read("SELECT * FROM mimiciv_icu.outputevents")
    assert len(urine) == int((raw["parameter"] == "Urine").sum()) and set(urine["itemid"]) == {226559}
    labs = wh.read("SELECT * FROM mimiciv_hosp.labevents")
    assert labs["labevent_id"].is_unique and 50912 in set(labs["itemid"])   # creatinine
    stays = wh.read("SELECT * FROM mimiciv_icu.icustays", times=("intime", "outtime"))
    assert (stays["outtime"] - stays["intime"] > pd.Timedelta(hours=48)).all()
    outcomes = pd.read_csv(DATA / "Outcomes-a.txt").set_index("RecordID")
    admissions = wh.read("SELECT * FROM mimiciv_hosp.admissions").set_index("hadm_id")
    assert (admissions["hospital_expire_flag"] == outcomes.loc[admissions.index, "In-hospital_death"]).all()
    scores = wh.read("SELECT * FROM vigil_features.reference_scores WHERE score = 'SAPS-I'")
    assert len(scores) == 20


def test_every_loaded_row_is_extracted_quarantined_or_excluded_with_a_reason(tmp_path):
    folder = _subset(DATA / "set-a.tar.xz", tmp_path / "few", 100, 40)
    settings, wh = _home(tmp_path, "accounting")
    physionet2012.load(wh, folder, DATA / "Outcomes-a.txt", progress=False)
    loaded = sum(wh.scalar(f"SELECT COUNT(*) FROM {t}") for t in
                 ("mimiciv_icu.chartevents", "mimiciv_icu.outputevents", "mimiciv_hosp.labevents"))
    extraction = extract(wh, until=datetime(2100, 1, 1))
    outcome = validate(extraction.frames, datetime(2100, 1, 1))
    events = outcome.tables["events"]
    assert extraction.records_in("events") == loaded
    accounted = (len(events.valid) + events.quarantine["record_id"].nunique() + len(events.duplicates)
                 + int((extraction.excluded["table"] == "events").sum()))
    assert accounted == loaded
    assert not events.quarantine["reason"].isna().any()


def test_unreadable_files_and_values_are_reported_not_lost(tmp_path):
    folder = _subset(DATA / "set-a.tar.xz", tmp_path / "bad", 0, 3)
    (folder / "999001.txt").write_bytes(b"\xff\xfe not text")
    (folder / "999002.txt").write_text("hello\n1,2,3\n")
    first = sorted(folder.glob("1*.txt"))[0]
    first.write_text(first.read_text() + "99:xx,HR,80\n12:00,Unobtainium,3\n12:00,HR,n/a\n")
    settings, wh = _home(tmp_path, "bad")
    loaded = physionet2012.load(wh, folder, DATA / "Outcomes-a.txt", progress=False)
    assert loaded.stays == 3
    assert loaded.not_loaded["file skipped: not UTF-8 text"] == 1
    assert loaded.not_loaded["file skipped: no 'Time,Parameter,Value' header"] == 1
    assert loaded.not_loaded["time is not HH:MM"] == 1
    assert loaded.not_loaded["parameter not in source_item_map: Unobtainium"] == 1
    outcome = validate(extract(wh, until=datetime(2100, 1, 1)).frames, datetime(2100, 1, 1))
    reasons = outcome.tables["events"].quarantine["reason"]
    assert reasons.str.contains("numeric|value", case=False).any()     # 'n/a' is quarantined, not dropped


def test_calibration_of_a_miscalibrated_score_is_measured():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.6, 20000)
    y = rng.uniform(size=p.size) < p
    overconfident = 1 / (1 + np.exp(-2 * np.log(p / (1 - p))))   # logit doubled
    assert calibration(y, overconfident)["slope"] == pytest.approx(0.5, abs=0.05)


def test_cross_validation_reports_every_candidate_and_the_saps_baseline(tmp_path, records):
    settings, wh = _home(tmp_path, "cv")
    physionet2012.load(wh, records["train"], DATA / "Outcomes-a.txt", progress=False)
    evaluation = cross_validate(wh, settings, _spec(settings), folds=3)
    results = evaluation.report["results"]
    assert {"xgboost_tabular", "logistic_baseline", "SAPS-I (logistic recalibration)", "SAPS-I (raw score)"} <= set(results)
    assert evaluation.report["examples"] == 900
    for name in ("xgboost_tabular", "logistic_baseline"):
        assert 0.7 < results[name]["auroc"] < 1 and results[name]["auroc_ci95"][0] < results[name]["auroc"]
        assert "calibration_slope" in results[name]
    assert evaluation.paths["markdown"].exists()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, records):
    """A home whose promoted model ``vigil evaluate`` trained on the reference records first."""
    settings, wh = _home(tmp_path_factory.mktemp("evaluate"), "home")
    spec = _spec(settings)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIGIL_PHYSIONET2012_TRAIN_RECORDS", str(records["train"]))
        evaluation = evaluate_source(settings, spec, "physionet2012", records["unseen"], DATA / "Outcomes-a.txt",
                                     progress=False)
    return settings, wh, spec, evaluation


def test_evaluate_scores_unseen_records_with_the_promoted_version_without_refitting(evaluated, records, tmp_path):
    settings, wh, spec, evaluation = evaluated
    promoted = registry.promoted(wh, spec.name)
    report = evaluation.report
    assert report["promoted"] == promoted["candidate"] and report["examples"] == 400
    assert report["excluded_seen_in_training"] == 0
    assert f"{promoted['candidate']} (promoted)" in report["results"] and "SAPS-I (raw score)" in report["results"]
    assert "logistic_baseline" in report["results"]
    trained_at = promoted["trained_at"]
    again = evaluate_source(settings, spec, "physionet2012", records["unseen"], DATA / "Outcomes-a.txt", progress=False)
    assert registry.promoted(wh, spec.name)["trained_at"] == trained_at            # nothing refitted
    assert again.report["results"] == report["results"]
    assert wh.scalar("SELECT COUNT(*) FROM mimiciv_icu.icustays") == 900           # unseen records stayed out
    overlap = _subset(DATA / "set-a.tar.xz", tmp_path / "overlap", 850, 100)    # 50 of these trained the model
    mixed = evaluate_source(settings, spec, "physionet2012", overlap, DATA / "Outcomes-a.txt", progress=False)
    assert mixed.report["excluded_seen_in_training"] == 50 and mixed.report["examples"] == 50


def test_a_night_on_the_loaded_cohort_scores_every_stay_in_the_icu(evaluated):
    settings, wh, spec, _ = evaluated
    night = pd.Timestamp("2025-06-10")
    stays = wh.read("SELECT stay_id, intime, outtime FROM mimiciv_icu.icustays", times=("intime", "outtime"))
    midnight = night + pd.Timedelta(days=1)
    in_icu = stays[(stays["intime"] <= midnight) & (stays["outtime"] > midnight)]
    assert len(in_icu) > 5
    results = run_night(night.date(), settings)
    assert results["publish"]["risk_rows"] == len(in_icu)
    risk = wh.read("SELECT stay_id, model_name, model_version FROM vigil_risk.risk_scores")
    assert sorted(risk["stay_id"]) == sorted(in_icu["stay_id"]) and set(risk["model_name"]) == {spec.name}
