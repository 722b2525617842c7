"""The three research models end to end on their synthetic cohorts (and the ICU model on the
same stays): trained by the training DAG through the same training code as the nightly model
(grid search, encoders, late fusion, reports), registered with their data snapshot and code version,
promoted explicitly, then scored by a night — each only for the stays its cohort enrols, each
row naming its version, its modalities, its class probabilities or hazard, and its explanations."""

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.modeling import registry
from pipeline.modeling.spec import load_spec
from pipeline.nightly import run_night
from pipeline.sources.mimic import read_enrolment
from pipeline.synthetic.cohort import STAY_BASE
from pipeline.synthetic.research import COHORTS, generate_research, write_research
from pipeline.store.warehouse import connect
from tests.conftest import airflow_dags_test, make_env

RESEARCH = {"pe_thrombolysis_outcome": "pe_thrombolysis", "liver_steatosis_grade": "liver_steatosis",
            "gist_recurrence": "gist_resection"}
ICU_MODELS = ("icu_mortality", "sepsis_icu_mortality")   # every ICU stay / the Sepsis-3 stays, on the same stays
TRAIN_AS_OF, NIGHT = datetime(2026, 2, 28), date(2026, 2, 28)


@pytest.fixture(scope="module")
def research_home(tmp_path_factory):
    """The cohorts trained as an operator trains them: one run of the training DAG
    (``airflow dags test vigil_training``), a mapped task per spec in ``models/``, not promoted."""
    home = tmp_path_factory.mktemp("research")
    settings = load_settings(make_env(home))
    wh = connect(settings)
    wh.create_schema()
    write_research(wh, generate_research(500, datetime(2026, 1, 1), 60, seed=7), settings.filestore, progress=False)
    result = airflow_dags_test(settings, "vigil_training", TRAIN_AS_OF.date(), conf={"promote": False}, timeout=2400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return settings, wh, {name: _training_report(settings, name) for name in [*RESEARCH, *ICU_MODELS]}


def _training_report(settings, name: str) -> dict:
    """The one training report of ``name`` the DAG run wrote, with its HTML page's path."""
    [path] = sorted((settings.reports_dir / name).glob("*.json"))
    return {**json.loads(path.read_text()), "html_report": str(path.with_suffix(".html"))}


def test_the_training_dag_registers_every_candidate_of_every_spec_as_of_its_logical_date(research_home):
    _, wh, _ = research_home
    versions = wh.read("SELECT model_name, candidate, training_as_of FROM vigil_models.model_versions",
                       times=("training_as_of",))
    assert sorted(versions["candidate"]) == ["clinical_ct_pathology_cox", "early_fusion", "early_fusion",
                                             "ehr_ecg_late_fusion", "late_fusion_stack", "late_fusion_stack",
                                             "mlp_concatenated", "random_forest_concatenated",
                                             "ultrasound_notes_numerics_late_fusion", "xgboost_tabular", "xgboost_tabular"]
    assert (versions["training_as_of"] == TRAIN_AS_OF).all()


def test_each_fused_model_beats_every_single_modality_on_held_out_patients(research_home):
    """The research cohorts' stays are ICU stays too: the ICU mortality model trains on them
    (never promoted here), its early fusion compared with its late-fusion baseline's single-modality models."""
    _, _, reports = research_home
    for name, report in reports.items():
        spec = load_spec(research_home[0].models_dir / f"{name}.yaml")
        late = next(c.name for c in spec.candidates if c.kind == "late_fusion")
        variants = dict(report["ablation"][late])
        fused = variants.pop("all modalities (complete cases)")
        if name in ICU_MODELS:
            fused = report["ablation"]["early_fusion"]["all modalities (complete cases)"]
        assert len(variants) >= 2, name
        for single, value in variants.items():
            assert fused > value, (name, single, fused, value)
        assert report["patients_on_both_sides"] == 0
    assert max(reports["pe_thrombolysis_outcome"]["trees"]["ehr_ecg_late_fusion"].values()) < 400  # early-stopped
    selected = reports["gist_recurrence"]["encoder_pretraining"]["ct_radiomics"]["radiomics_selected"]
    assert 3 <= len(selected) <= 12 and all(n.startswith("original_") for n in selected)  # on the training split
    assert "only ct_radiomics" in reports["gist_recurrence"]["ablation"]["clinical_ct_pathology_cox"]
    liver = reports["liver_steatosis_grade"]
    assert {"random_forest_concatenated", "mlp_concatenated"} <= set(liver["candidates"])
    assert liver["ablation"]["random_forest_concatenated"]["without ultrasound"] < \
        liver["candidates"]["random_forest_concatenated"]["auroc"]   # the images carry signal


def test_reports_hold_the_task_metrics_and_plots(research_home):
    _, _, reports = research_home
    pe, liver, gist = (reports[n] for n in RESEARCH)
    for report in (pe, liver):
        metrics = next(iter(report["candidates"].values()))
        assert set(metrics["per_class"]) == set(report["classes"]) and metrics["auroc"] > 0.7
        assert all(c["auroc_ci95"][0] <= c["auroc"] <= c["auroc_ci95"][1] for c in metrics["per_class"].values())
    gist_metrics = next(iter(gist["candidates"].values()))
    assert gist_metrics["c_index"] > 0.65 and gist_metrics["events"] > 5
    assert [row["params"] for row in pe["grid_search"]["ehr_ecg_late_fusion"]][:2] == [
        {"max_depth": 2, "learning_rate": 0.05}, {"max_depth": 2, "learning_rate": 0.1}]
    for report in reports.values():
        page = open(report["html_report"]).read()
        assert page.count("<img") >= 3 and "Modality ablation" in page
    assert "Per class" in open(pe["html_report"]).read() and "Harrell" in open(gist["html_report"]).read()
    assert "Kaplan-Meier by predicted risk tertile" in open(gist["html_report"]).read()
    assert list(pe["factor_importance"]["ehr_ecg_late_fusion"]) == ["normal", "death", "bleeding"]
    assert "Factor importance" in open(pe["html_report"]).read()
    summary = open(pe["html_report"].replace(".html", ".md")).read()
    assert "trained on data known by" in summary and "label counts" in summary and "positive)" not in summary


def test_the_reports_show_their_plots_in_headless_chromium(research_home, tmp_path_factory):
    from tests.test_ui_plugin import _chrome, _full_page, _screenshot_folder

    _, _, reports = research_home
    driver = _chrome()
    folder = _screenshot_folder(tmp_path_factory)
    try:
        for name, report in reports.items():
            driver.get(Path(report["html_report"]).as_uri())
            shown = driver.execute_script(
                "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 200).length")
            assert shown >= 3, (name, shown)
            body = driver.find_element("tag name", "body").text
            assert "Modality ablation" in body and ("Per class" in body or "Harrell" in body
                                                    or name in ICU_MODELS), name
            _full_page(driver, folder / f"{name}.png", 800)
    finally:
        driver.quit()


def test_versions_are_registered_with_their_snapshot_and_promoted_only_when_asked(research_home):
    settings, wh, _ = research_home
    versions = wh.read("SELECT model_name, version, promoted, selected, data_snapshot, code_version "
                       "FROM vigil_models.model_versions")
    assert set(versions["model_name"]) == {*RESEARCH, *ICU_MODELS} and not versions["promoted"].astype(bool).any()
    snapshot = json.loads(versions["data_snapshot"].iloc[0])
    assert snapshot["rows"]["cohort"] > 0 and snapshot["latest_arrival"] <= str(TRAIN_AS_OF)
    assert versions["code_version"].str.len().min() > 0
    with pytest.raises(RuntimeError, match="no model has a promoted version"):
        run_night(NIGHT, settings)
    for name in [*RESEARCH, *ICU_MODELS]:
        registry.promote(wh, name, home=settings.home)
    # an operator may promote any candidate: the liver model whose text is each stay's own fields
    forest = versions[versions["version"].str.endswith("-random_forest_concatenated")]["version"].iloc[0]
    registry.promote(wh, "liver_steatosis_grade", forest, home=settings.home)


def test_a_night_scores_each_cohort_with_its_promoted_model(research_home):
    settings, wh, _ = research_home
    run_night(NIGHT, settings)
    risk = wh.read("SELECT * FROM vigil_risk.risk_scores WHERE night = :n", {"n": NIGHT})
    promoted = {name: registry.promoted(wh, name)["version"] for name in RESEARCH}
    for name, cohort in RESEARCH.items():
        rows = risk[risk["model_name"] == name]
        first = STAY_BASE + COHORTS[cohort]
        assert len(rows) > 5, name
        assert rows["stay_id"].between(first, first + 99_999).all(), name   # its own cohort only
        assert set(rows["model_version"]) == {promoted[name]}
        assert all(json.loads(f) for f in rows["top_factors"])
        contributions = rows["modality_contributions"].map(json.loads)
        # late fusion: each modality's stacker term; a concatenation model: each embedded modality's occlusion
        own = {"tabular"} if promoted[name].endswith("_concatenated") else set()
        assert all(set(c) == set(m.split("+")) - own for c, m in zip(contributions, rows["modalities"]))
        outputs = rows["outputs"].map(json.loads)
        spec = load_spec(settings.models_dir / f"{name}.yaml")
        if spec.task == "multiclass":
            assert all(set(o["probabilities"]) == set(spec.classes) for o in outputs)
            assert all(abs(1 - o["probabilities"][spec.classes[0]] - p) < 1e-5
                       for o, p in zip(outputs, rows["probability"]))
        else:
            assert all(o["horizon_days"] == spec.horizon_days and "log_hazard" in o for o in outputs)
    liver = risk[risk["model_name"] == "liver_steatosis_grade"]   # its text rendered from each stay's features
    assert liver["model_version"].str.endswith("-random_forest_concatenated").all()
    assert liver["modalities"].str.split("+").map(lambda used: "clinical_text" in used).all()
    gist = risk[risk["model_name"] == "gist_recurrence"]
    assert (gist["modalities"] == "tabular+ct+ct_radiomics+pathology").mean() > 0.8
    icu = risk[risk["model_name"] == "icu_mortality"]   # every active stay, each cohort's included
    assert set(icu["stay_id"]) >= set(risk.loc[risk["model_name"] != "icu_mortality", "stay_id"])
    assert set(icu["model_version"]) == {registry.promoted(wh, "icu_mortality")["version"]}
    for terms, used in zip(icu["modality_contributions"].map(json.loads), icu["modalities"]):
        assert set(terms) == set(used.split("+")) - {"tabular"}   # early fusion: leave-one-modality-out deltas
    sepsis = risk[risk["model_name"] == "sepsis_icu_mortality"]   # only the stays Sepsis-3 enrolled by the night's end
    septic = read_enrolment(wh, "cohort_sepsis3", datetime.combine(NIGHT + timedelta(days=1), datetime.min.time()))
    assert 5 < len(sepsis) < len(icu) and set(sepsis["stay_id"]) <= set(septic["stay_id"])
    assert set(sepsis["model_version"]) == {registry.promoted(wh, "sepsis_icu_mortality")["version"]}


def test_survival_scores_are_monitored_at_their_horizon_once_outcomes_are_known(research_home):
    """Months later, each GIST row's 30-day outcome is known (recurrence within 30 days of its
    night, or follow-up past it): the monitoring rows judge the scores against it."""
    from pipeline.monitoring import scored_performance

    settings, wh, _ = research_home
    spec = load_spec(settings.models_dir / "gist_recurrence.yaml")
    rows = scored_performance(wh, spec, "gist_recurrence", NIGHT, datetime(2026, 12, 31), lookback_days=7)
    assert list(rows["scored_night"]) == [NIGHT]
    gist = rows.iloc[0]
    scored = wh.read("SELECT COUNT(*) AS n FROM vigil_risk.risk_scores WHERE model_name = 'gist_recurrence' "
                     "AND night = :n", {"n": NIGHT})["n"].iloc[0]
    assert 5 < gist["labelled"] <= scored and 0 < gist["positives"] < gist["labelled"]
    assert gist["auroc"] is not None and 0 <= gist["mean_predicted"] <= 1


@pytest.mark.slow
def test_the_nightly_dag_maps_a_score_task_over_the_promoted_models(research_home):
    settings, wh, _ = research_home
    night = date(2026, 3, 1)
    result = airflow_dags_test(settings, "vigil_nightly", night)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert output.count("task_id=score") >= len(RESEARCH) + len(ICU_MODELS) and "map_index=4" in output
    risk = wh.read("SELECT model_name, COUNT(*) AS n FROM vigil_risk.risk_scores WHERE night = :n GROUP BY model_name",
                   {"n": night})
    assert set(risk["model_name"]) == {*RESEARCH, *ICU_MODELS} and (risk["n"] > 5).all()
