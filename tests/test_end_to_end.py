"""Synthetic cohort -> training -> two consecutive nights -> risk table, on SQLite and PostgreSQL.

Checked against the source tables directly: exactly one risk row per active stay and model per
night, row accounting that closes, watermarks, and byte-identical re-runs.
"""

import json
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from pipeline.nightly import run_night
from pipeline.stages.context import run_folder
from pipeline.stages.validate import NO_DATA, SUPERSEDED
from pipeline.store.warehouse import to_time
from tests.conftest import E2E_NIGHTS

pytestmark = pytest.mark.slow


def risk_dump(wh, night=None) -> str:
    where = "WHERE night = :night" if night else ""
    rows = wh.read(f"SELECT * FROM vigil_risk.risk_scores {where} ORDER BY night, stay_id, model_name",
                   {"night": night} if night else None)
    rows["night"] = rows["night"].astype(str)
    rows["prediction_time"] = to_time(rows["prediction_time"])
    return rows.to_csv(index=False)


def expected_active(wh, night) -> set[int]:
    """Stays in the ICU at the prediction time, from the source tables, minus rejected cohort rows."""
    t = datetime.combine(night + timedelta(days=1), datetime.min.time())
    stays = wh.read("SELECT i.stay_id, i.intime, i.outtime, p.anchor_age FROM mimiciv_icu.icustays i "
                    "JOIN mimiciv_hosp.patients p ON p.subject_id = i.subject_id", times=("intime", "outtime"))
    inside = (stays["intime"] <= t) & (stays["outtime"].isna() | (stays["outtime"] > t)) & (stays["anchor_age"] >= 0)
    return set(stays.loc[inside, "stay_id"].astype(int))


def test_training_promotes_a_model_with_a_patient_level_split(trained):
    report = trained["report"]
    assert report["patients_on_both_sides"] == 0
    assert report["held_out"]["n"] > 30 and report["train"]["n"] > 4 * report["held_out"]["n"] * 0.9
    versions = trained["warehouse"].read("SELECT candidate, promoted, metrics_json FROM vigil_models.model_versions")
    assert len(versions) == 3 and versions["promoted"].astype(bool).sum() == 1
    assert set(report["candidates"]) == {"xgboost_tabular", "early_fusion", "late_fusion_stack"}
    assert report["selected"] != "late_fusion_stack"  # a baseline is never promoted
    page = Path(report["html_report"]).read_text()  # the report with its plots, beside the Markdown
    # curves, calibration, three confusion matrices, and a SHAP summary per boosted-tree candidate
    assert set(report["factor_importance"]) == {"xgboost_tabular", "late_fusion_stack"} and "Factor importance" in page
    assert page.count("data:image/png;base64,") == 5 + 2 and "without images" in page and "Alert burden" in page
    assert "only ecg" in page and "all modalities (complete cases)" in page


def test_each_night_scores_every_active_stay_exactly_once(trained):
    wh = trained["warehouse"]
    for night in E2E_NIGHTS:
        rows = wh.read("SELECT stay_id, model_name, probability, risk_band, modalities, top_factors "
                       "FROM vigil_risk.risk_scores WHERE night = :night", {"night": night})
        unscored = wh.read("SELECT stay_id, reason FROM vigil_audit.exclusions WHERE night = :night "
                           "AND source_table = 'cohort'", {"night": night})
        assert set(rows["stay_id"]) == expected_active(wh, night) - set(unscored["stay_id"])
        assert len(unscored) <= 4 and set(unscored["reason"]) <= {NO_DATA, SUPERSEDED}
        t = datetime.combine(night + timedelta(days=1), datetime.min.time())
        for stay in unscored.loc[unscored["reason"] == NO_DATA, "stay_id"]:  # really nothing charted for it yet
            assert wh.scalar("SELECT COUNT(*) FROM mimiciv_icu.chartevents WHERE stay_id = :s AND charttime <= :t",
                             {"s": int(stay), "t": t}) == 0
        assert not rows.duplicated(["stay_id", "model_name"]).any()
        assert rows["probability"].between(0, 1).all()
        assert set(rows["risk_band"]) <= {"low", "medium", "high"}
        assert rows["modalities"].str.startswith("tabular").all()
        assert rows["top_factors"].str.startswith("[{").all()
    # consecutive nights are different data: new admissions, discharges, new measurements
    first, second = (set(wh.read("SELECT stay_id FROM vigil_risk.risk_scores WHERE night = :n", {"n": n})["stay_id"])
                     for n in E2E_NIGHTS)
    assert first != second


def test_row_accounting_closes_for_every_run(trained):
    wh = trained["warehouse"]
    counts = wh.read("SELECT * FROM vigil_audit.run_counts")
    assert len(counts) >= 10
    assert (counts["records_in"] == counts["used"] + counts["quarantined"] + counts["excluded"]).all()
    runs = wh.read("SELECT * FROM vigil_audit.runs")
    assert (runs["stays_active"] == runs["stays_scored"]).all()
    quarantined = wh.read("SELECT reason, COUNT(*) AS n FROM vigil_audit.quarantine GROUP BY reason")
    assert "value is empty or not numeric" in set(quarantined["reason"])  # the synthetic dirt is caught
    # the second night only extracted what arrived after the first night's watermark
    events = counts[counts["source_table"] == "events"].merge(runs[["run_id", "published_at"]], on="run_id")
    first_runs = events.sort_values("published_at").drop_duplicates("night")
    by_night = dict(zip(first_runs["night"].astype(str), first_runs["records_in"]))
    assert by_night[str(E2E_NIGHTS[1])] < by_night[str(E2E_NIGHTS[0])] / 5
    marks = wh.read("SELECT * FROM vigil_audit.watermarks", times=("high_water",))
    assert marks.groupby("source_table")["high_water"].max().eq(
        pd.Timestamp(E2E_NIGHTS[1] + timedelta(days=1))).all()


def test_rerunning_a_night_leaves_the_risk_table_byte_identical(trained):
    wh, settings = trained["warehouse"], trained["settings"]
    before_all = risk_dump(wh)
    before_first = risk_dump(wh, E2E_NIGHTS[0])
    run_night(E2E_NIGHTS[0], settings)
    assert risk_dump(wh, E2E_NIGHTS[0]) == before_first
    assert risk_dump(wh) == before_all
    digests = wh.read("SELECT risk_rows_sha256 FROM vigil_audit.runs WHERE night = :n", {"n": E2E_NIGHTS[0]})
    assert len(digests) == 1  # one audit row a night: the re-run replaced the first run's
    stored = wh.scalar("SELECT COUNT(*) FROM vigil_features.stay_events")
    run_night(E2E_NIGHTS[1], settings)
    assert wh.scalar("SELECT COUNT(*) FROM vigil_features.stay_events") == stored  # replaced, not appended


def test_training_path_and_nightly_path_give_identical_features(trained):
    """Same stays, same as-of time: the features the nightly run scored (incrementally, from the
    store) equal those the training path computes from the source tables in one pass."""
    from pipeline.features.windows import KEY, build_features
    from pipeline.modeling.spec import load_spec
    from pipeline.sources.mimic import extract
    from pipeline.validate.checks import validate

    settings, wh = trained["settings"], trained["warehouse"]
    night = E2E_NIGHTS[1]
    summary = trained["runs"][night]["features"]["icu_mortality"]
    assert summary["recomputed"] + summary["carried_forward"] == trained["runs"][night]["features"]["active_stays"]
    nightly = pd.read_parquet(run_folder(night, settings) / "features" / "icu_mortality.shard-0.parquet")
    spec = load_spec(settings.models_dir / "icu_mortality.yaml")
    as_of = datetime.combine(night + timedelta(days=1), datetime.min.time())
    outcome = validate(extract(wh, until=as_of).frames, as_of)
    offline = build_features(outcome.valid("events"), outcome.valid("cohort"), nightly[KEY], spec.window_spec)
    columns = [*KEY, "age", "hours_in_icu", *spec.window_spec.columns()]
    assert len(nightly) > 10
    pd.testing.assert_frame_equal(nightly[columns].reset_index(drop=True), offline[columns].reset_index(drop=True),
                                  check_exact=True)


def test_bi_views_agree_with_the_risk_table(trained):
    import json

    wh = trained["warehouse"]
    risk = wh.read("SELECT * FROM vigil_risk.risk_scores")
    assert (risk["operating_threshold"] == 0.3).all()  # the spec's operating threshold, on every row
    latest = risk.sort_values("night").drop_duplicates(["stay_id", "model_name"], keep="last")
    alerts = wh.read("SELECT stay_id, model_name, probability FROM vigil_risk.alerts")
    expected = latest[latest["probability"] >= latest["operating_threshold"]]
    assert sorted(zip(alerts["stay_id"], alerts["model_name"])) == sorted(zip(expected["stay_id"], expected["model_name"]))
    assert 0 < len(alerts) < len(latest)
    history = wh.read("SELECT night, stay_id, alert, probability, operating_threshold FROM vigil_risk.risk_history "
                      "JOIN vigil_risk.risk_scores USING (night, stay_id, model_name, probability)")
    assert len(history) == len(risk)
    assert (history["alert"].astype(bool) == (history["probability"] >= history["operating_threshold"])).all()
    factors = wh.read("SELECT stay_id, night, rank, factor, contribution FROM vigil_risk.risk_factors")
    assert len(factors) == sum(len(json.loads(f)) for f in risk["top_factors"])
    first = json.loads(risk["top_factors"].iloc[0])[0]
    row = factors[(factors["stay_id"] == risk["stay_id"].iloc[0]) & (factors["night"].astype(str) == str(risk["night"].iloc[0]))
                  & (factors["rank"] == 1)]
    assert row["factor"].tolist() == [first["factor"]] and abs(row["contribution"].iloc[0] - first["contribution"]) < 1e-9


def test_each_night_measures_ecg_intervals_where_the_cart_did_not(trained):
    from pipeline.embed.intervals import INTERVALS

    settings = trained["settings"]
    for night in E2E_NIGHTS:
        intervals = pd.read_parquet(run_folder(night, settings) / "embed" / "ecg_intervals.shard-0.parquet")
        records = pd.read_parquet(run_folder(night, settings) / "embed" / "records_ecgs.shard-0.parquet")
        assert sorted(intervals["record_id"]) == sorted(records["record_id"]) and len(records) > 0
        assert set(intervals["measured_by"]) <= {"cart", "signal"}
        measured = intervals[intervals["measured_by"] == "signal"]
        assert measured["heart_rate"].between(30, 200).mean() > 0.9, measured[list(INTERVALS)].describe()


def test_each_night_writes_drift_and_performance_as_outcomes_arrive(trained):
    from pipeline.modeling.spec import load_spec
    from pipeline.monitoring import scored_performance

    wh, settings = trained["warehouse"], trained["settings"]
    drift = wh.read("SELECT night, model_name, feature, psi FROM vigil_audit.drift")
    for night in E2E_NIGHTS:
        tonight = drift[drift["night"].astype(str).str[:10] == night.isoformat()]
        assert "score" in set(tonight["feature"]) and len(tonight) > 20
        assert tonight["psi"].ge(0).all()
    report = json.loads((run_folder(E2E_NIGHTS[-1], settings) / "report" / "report.json").read_text())
    assert "performance" in report and "feature_psi_top" in next(iter(report["models"].values()))
    # no stay scored on these nights has left hospital by the last one; two weeks on, outcomes
    # have arrived and are joined back to the nights the scores were made on
    spec = load_spec(settings.models_dir / "icu_mortality.yaml")
    later = scored_performance(wh, spec, spec.name, E2E_NIGHTS[-1], datetime(2026, 2, 14), 60)
    assert [str(n) for n in later["scored_night"]] == [n.isoformat() for n in E2E_NIGHTS]
    scored = wh.read("SELECT night, COUNT(*) AS n FROM vigil_risk.risk_scores GROUP BY night")
    assert (later["labelled"].to_numpy() <= scored["n"].to_numpy()).all() and later["labelled"].min() > 10
    assert later["brier"].between(0, 0.5).all() and later["positives"].sum() > 0
    stored = wh.read("SELECT scored_night, labelled FROM vigil_audit.performance WHERE night = :n",
                     {"n": E2E_NIGHTS[-1]})
    assert len(stored) == len(report["performance"])
