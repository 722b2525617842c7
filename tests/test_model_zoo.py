"""The model zoo's parts without a warehouse: the research specs, spec errors that name their
field, late fusion on model inputs for every task, task metrics, grid search and explicit
promotion in the registry."""

import dataclasses
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import brier_score_loss, roc_auc_score

from pipeline.config import PROJECT_ROOT
from pipeline.modeling import registry
from pipeline.modeling.estimators import LateFusionRisk, make_candidate
from pipeline.modeling.inputs import ModelInputs
from pipeline.modeling.metrics import multiclass_metrics, survival_metrics, task_metrics
from pipeline.modeling.spec import SpecError, load_specs, parse_spec
from pipeline.modeling.tuning import grid_search

MODELS = PROJECT_ROOT / "models"


def test_the_four_specs_load_with_their_tasks_and_modalities():
    specs = {s.name: s for s in load_specs(MODELS)}
    assert set(specs) == {"sepsis_icu_mortality", "icu_mortality", "pe_thrombolysis_outcome", "liver_steatosis_grade",
                          "gist_recurrence"}
    sepsis = specs["sepsis_icu_mortality"]
    assert sepsis.cohort_query == "cohort_sepsis3" and sepsis.prediction_offset_hours == 48
    assert (sepsis.sequence["window_hours"], sepsis.sequence["windows"]) == (24, 2)   # the paper's 24 h windows
    early = next(c for c in sepsis.candidates if c.kind == "early_fusion")
    assert set(early.grid) <= {"hidden", "dropout", "learning_rate", "focal_gamma", "focal_alpha", "weight_decay"}
    assert sepsis.cv_folds == 5
    pe, liver, gist = specs["pe_thrombolysis_outcome"], specs["liver_steatosis_grade"], specs["gist_recurrence"]
    assert (pe.task, pe.classes, pe.used_modalities()) == ("multiclass", ("normal", "death", "bleeding"), ("tabular", "ecg"))
    assert liver.classes == ("S0", "S1", "S2", "S3") and liver.source("ultrasound") == "images"
    assert liver.modalities["ultrasound"]["max_records"] == 5
    assert (gist.task, gist.horizon_days, gist.promote_metric) == ("survival", 30.0, "c_index")
    assert {gist.source(m) for m in ("ct", "ct_radiomics", "pathology")} == {"images"}
    assert gist.modalities["ct_radiomics"]["extractor"] == "radiomics"
    records = pd.DataFrame({"category": ["CT", "SM", "CR"]})
    assert gist.modality_records("pathology", records)["category"].tolist() == ["SM"]
    assert all(s.cohort_query for s in (pe, liver, gist)) and specs["icu_mortality"].cohort_query is None
    assert pe.candidates[0].grid == {"max_depth": [2, 3], "learning_rate": [0.05, 0.1]}


def raw(name):
    return yaml.safe_load((MODELS / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name, change, message", [
    ("gist_recurrence", lambda r: r["modalities"]["pathology"].update(select_top_k=5),
     "select_top_k and radiomics settings belong to an 'extractor: radiomics' modality"),
    ("gist_recurrence", lambda r: r["modalities"]["ct_radiomics"].update(extractor="wavelets"),
     r"ct_radiomics.extractor: 'radiomics' is the one extractor"),
    ("gist_recurrence", lambda r: r["modalities"]["ct_radiomics"].update(select_top_k=0),
     r"ct_radiomics.select_top_k: a positive number"),
    ("gist_recurrence", lambda r: r["modalities"]["ct_radiomics"].update(backbone="/models/resnet"),
     "a radiomics modality has no network"),
    ("pe_thrombolysis_outcome", lambda r: r["candidates"][0].update(inputs=["tabular", "mri"]),
     r"candidates\[0\].inputs: unknown modality 'mri'"),
    ("pe_thrombolysis_outcome", lambda r: r["modalities"].update(waveform={"pooling": "mean"}),
     "modalities.waveform: unknown modality"),
    ("pe_thrombolysis_outcome", lambda r: r["candidates"][0].update(grid={"max_depth": 3}),
     r"candidates\[0\].grid: a mapping of parameter name -> non-empty list"),
    ("pe_thrombolysis_outcome", lambda r: r["candidates"][0].update(grid=[2, 3]), r"candidates\[0\].grid"),
    ("pe_thrombolysis_outcome", lambda r: r["label"].pop("classes"), "label.classes: a multiclass task names"),
    ("pe_thrombolysis_outcome", lambda r: r["label"].pop("query"), "label: missing required field 'query'"),
    ("pe_thrombolysis_outcome", lambda r: r.pop("label"), "missing required field 'label'"),
    ("pe_thrombolysis_outcome", lambda r: r["candidates"][0].update(kind="xgboost"),
     r"candidates\[0\].kind: a xgboost candidate cannot fit a multiclass task"),
    ("pe_thrombolysis_outcome", lambda r: r["candidates"][0]["params"].update(folds=1), r"params.folds"),
    ("pe_thrombolysis_outcome", lambda r: r["candidates"][0]["params"]["base"].update(images={}),
     r"params.base.images: not one of the candidate's inputs"),
    ("pe_thrombolysis_outcome", lambda r: r["candidates"][0]["params"].update(stacker="svm"),
     r"params: unknown late-fusion option\(s\) \['stacker'\]"),
    ("pe_thrombolysis_outcome", lambda r: r["training"].update(promote_metric="c_index"),
     "training.promote_metric: 'c_index' is not one of"),
    ("gist_recurrence", lambda r: r["candidates"][0]["params"].update(early_stopping_rounds="yes"),
     r"candidates\[0\].params.early_stopping_rounds: a whole number"),
    ("gist_recurrence", lambda r: r["label"].pop("horizon_days"), "label.horizon_days"),
    ("gist_recurrence", lambda r: r["modalities"]["ct"].update(source="xray"), "modalities.ct: unknown modality"),
    ("gist_recurrence", lambda r: r["modalities"]["ct"].update(categories="CT"), "modalities.ct.categories"),
    ("gist_recurrence", lambda r: r["training"].update(cv_folds=1), "training.cv_folds"),
    ("liver_steatosis_grade", lambda r: r["modalities"]["clinical_text"].pop("template"),
     "modalities.clinical_text.template: required"),
    ("liver_steatosis_grade", lambda r: r["modalities"]["clinical_text"].update(template="BMI {bmi:.1f}, {sex}"),
     r"modalities.clinical_text.template: fields must name the spec's features; unknown: \['bmi'\]"),
    ("liver_steatosis_grade", lambda r: r["modalities"]["clinical_text"].update(template="Age {age"),
     "modalities.clinical_text.template: expected '}'"),
    ("liver_steatosis_grade", lambda r: r["modalities"]["clinical_text"].update(template="{sex:.0f} {}"),
     r"modalities.clinical_text.template: fields must name the spec's features; unknown: \[''\]"),
    ("liver_steatosis_grade", lambda r: r["modalities"]["clinical_text"].update(template="Sex {sex:.0f}"),
     "modalities.clinical_text.template: cannot render \\(ValueError"),
    ("liver_steatosis_grade", lambda r: r["modalities"]["clinical_text"].update(pooling="attention"),
     "modalities.clinical_text.pooling: a rendered modality is one text per row"),
    ("liver_steatosis_grade", lambda r: r["modalities"]["ultrasound"].update(shared_space=True),
     "modalities.ultrasound.shared_space: an images modality's CLIP 'backbone'"),
    ("liver_steatosis_grade", lambda r: r["modalities"]["ultrasound"].update(text_encoder="clip"),
     "modalities.ultrasound.text_encoder: only a notes or rendered modality reads text"),
])
def test_spec_errors_name_the_field(name, change, message):
    spec = raw(name)
    change(spec)
    with pytest.raises(SpecError, match=message):
        parse_spec(spec, f"models/{name}.yaml")


def zoo_inputs(n: int, seed: int, task: str):
    """Tabular columns and an image-set modality (missing for 30 % of rows), each carrying part of the outcome."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    tabular = pd.DataFrame({"age": 60 + 10 * a + rng.normal(0, 3, n), "lab_x__last_24h": rng.normal(size=n),
                            "sex": rng.choice(["F", "M"], n)})
    images = np.stack([b[:, None] + rng.normal(0, 0.5, (n, 8)) for _ in range(3)], axis=1)  # (rows, 3 images, 8)
    mask = np.tile(rng.uniform(size=(n, 1)) > 0.3, (1, 3))
    inputs = ModelInputs(tabular=tabular, embeddings={"ct": images}, masks={"ct": mask})
    total = 1.3 * a + 1.3 * b
    if task == "multiclass":
        logits = np.column_stack([np.zeros(n), total, 1.5 * a - 1.0 * b])
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        y = (rng.uniform(size=(n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    else:
        time = rng.exponential(100 / np.exp(total))
        censor = rng.uniform(20, 300, n)
        y = np.column_stack([np.minimum(time, censor), (time <= censor).astype(float)])
    return inputs, y, np.arange(n)


class Spec:  # the parts of a ModelSpec the metrics read
    def __init__(self, task):
        self.task, self.operating_threshold, self.seed = task, 0.5, 7
        self.classes = ("normal", "death", "bleeding")
        self.horizon_days, self.promote_metric = 60.0, "auroc" if task == "multiclass" else "c_index"
        self.name, self.preprocessing = "toy", {}

    def poolings(self):
        return {}


@pytest.mark.parametrize("task", ["multiclass", "survival"])
def test_late_fusion_on_model_inputs_scores_explains_and_falls_back(task):
    train, y, groups = zoo_inputs(900, 0, task)
    test, y_test, _ = zoo_inputs(400, 1, task)
    model = LateFusionRisk(task=task, modalities=("tabular", "ct"), folds=4, horizon_days=60.0).fit(train, y, groups)
    p = model.predict_risk(test)
    assert p.shape == (400,) and ((p >= 0) & (p <= 1)).all()
    used = model.modalities_used(test)
    assert set(used) == {"tabular+ct", "tabular"}  # rows without images are scored from the tabular model
    assert [u == "tabular" for u in used] == (~test.masks["ct"].any(axis=1)).tolist()
    outputs = model.predict_outputs(test)
    if task == "multiclass":
        np.testing.assert_allclose(outputs.sum(axis=1), 1, atol=1e-6)
        np.testing.assert_allclose(p, 1 - outputs[:, 0])
    else:  # from one stacker, a higher log hazard never means a lower probability of the event by the horizon
        for subset in set(used):
            rows = np.flatnonzero([u == subset for u in used])
            order = rows[np.argsort(outputs[rows])]
            assert (np.diff(p[order]) >= -1e-9).all()
    factors = model.explain(test, top_k=2)
    assert all(len(f) == 2 for f in factors)
    assert {f["factor"] for row in factors for f in row} <= {"age", "lab_x", "sex", "ct"}
    terms = model.modality_contributions(test)
    assert all(set(t) == set(u.split("+")) for t, u in zip(terms, used))
    spec = Spec(task)
    metrics, (binary_y, binary_p) = task_metrics(spec, model, test, y_test)
    assert len(binary_y) == len(binary_p)
    if task == "multiclass":
        assert metrics["auroc"] > 0.7 and set(metrics["per_class"]) == set(spec.classes)
        assert np.array(metrics["confusion"]).sum() == 400
    else:
        assert metrics["c_index"] > 0.7 and metrics["c_index_ci95"][0] < metrics["c_index"] < metrics["c_index_ci95"][1]


@pytest.mark.parametrize("kind", ["random_forest", "mlp"])
def test_concatenation_models_fuse_pooled_embeddings_with_the_numerics(kind):
    train, y, groups = zoo_inputs(900, 0, "multiclass")
    test, y_test, _ = zoo_inputs(400, 1, "multiclass")
    model = make_candidate(kind, ("tabular", "ct"), {"resample": "smotenc"}, 7, task="multiclass").fit(train, y, groups)
    outputs = model.predict_outputs(test)
    np.testing.assert_allclose(outputs.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(model.predict_risk(test), 1 - outputs[:, 0])
    metrics, _ = task_metrics(Spec("multiclass"), model, test, y_test)
    blind = ModelInputs(test.tabular, test.embeddings, {"ct": np.zeros_like(test.masks["ct"])})
    assert metrics["auroc"] > task_metrics(Spec("multiclass"), model, blind, y_test)[0]["auroc"] + 0.03
    factors = model.explain(test, top_k=4)
    assert {f["factor"] for row in factors for f in row} <= {"age", "lab_x", "sex", "ct"}
    assert any(f["factor"] == "ct" for row in factors for f in row)


def test_calibration_on_held_out_folds_improves_a_rebalanced_forest_and_scoring_is_one_call():
    """SMOTENC and balanced class weights push a forest's probabilities towards the rare class;
    sigmoid calibration on out-of-fold predictions of patient-level folds pulls them back."""
    train, y, groups = zoo_inputs(900, 0, "multiclass")
    test, y_test, _ = zoo_inputs(400, 1, "multiclass")
    y, y_test = (y == 2).astype(int), (y_test == 2).astype(int)   # a third of the rows
    params = {"resample": "smotenc", "min_samples_leaf": 3}
    raw_forest = make_candidate("random_forest", ("tabular", "ct"), params, 7).fit(train, y, groups)
    calibrated = make_candidate("random_forest", ("tabular", "ct"), {**params, "calibration_folds": 5}, 7).fit(
        train, y, groups)
    raw_p, calibrated_p = raw_forest.predict_risk(test), calibrated.predict_risk(test)
    assert abs(calibrated_p.mean() - y_test.mean()) < abs(raw_p.mean() - y_test.mean()) - 0.05
    assert brier_score_loss(y_test, calibrated_p) < brier_score_loss(y_test, raw_p) - 0.005
    assert roc_auc_score(y_test, calibrated_p) > roc_auc_score(y_test, raw_p) - 0.01
    scored = calibrated.scored(test, top_k=3)
    np.testing.assert_allclose(scored.probability, calibrated_p)
    assert scored.outputs is None and scored.factors == calibrated.explain(test, top_k=3)
    has_ct = test.masks["ct"].any(axis=1)
    assert all(set(t) == ({"ct"} if h else set()) for t, h in zip(scored.contributions, has_ct))


def test_multiclass_and_survival_metrics_on_known_answers():
    y = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.eye(3)[y]
    m = multiclass_metrics(y, perfect, ("a", "b", "c"))
    assert (m["accuracy"], m["macro_f1"], m["auroc"], m["brier"]) == (1.0, 1.0, 1.0, 0.0)
    assert m["confusion"] == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]
    assert m["per_class"]["b"]["f2"] == 1.0 and m["per_class"]["b"]["specificity"] == 1.0
    days = np.array([10.0, 20.0, 30.0, 40.0, 200.0])
    event = np.array([1, 1, 1, 0, 0])
    s = survival_metrics(days, event, risk=-days, probability=np.array([0.9, 0.8, 0.7, 0.2, 0.1]), horizon_days=35)
    assert s["c_index"] == 1.0 and s["events_by_horizon"] == 3
    assert s["known_at_horizon"] == 5 and s["auroc"] == 1.0   # the patient censored at 40 d was event-free at 35 d


def test_survival_metrics_at_the_horizon_correct_for_censoring():
    """Exponential event times with uniform censoring: dropping the patients censored before the
    horizon inflates the event rate and flatters the Brier score; the weighted figures and the
    Kaplan-Meier rate land on the truth that the uncensored times give."""
    rng = np.random.default_rng(0)
    rate = 0.002 * np.exp(rng.normal(size=4000))
    event_time, censored_at = rng.exponential(1 / rate), rng.uniform(0, 900, 4000)
    days, event = np.minimum(event_time, censored_at), event_time <= censored_at
    probability, truth = 1 - np.exp(-rate * 365), event_time <= 365
    s = survival_metrics(days, event, risk=np.log(rate), probability=probability, horizon_days=365, resamples=10)
    assert abs(s["observed_risk"] - truth.mean()) < 0.02
    assert s["events_by_horizon"] / s["known_at_horizon"] > truth.mean() + 0.05   # the known rows' rate is biased
    assert abs(s["auroc"] - roc_auc_score(truth, probability)) < 0.01
    assert abs(s["brier"] - brier_score_loss(truth, probability)) < 0.005
    assert s["brier_known"] < brier_score_loss(truth, probability) - 0.002   # flattered by the easy early events
    assert abs(s["mean_predicted"] - s["observed_risk"]) < 0.03   # the true probabilities are calibrated
    assert survival_metrics(days, event, np.log(rate), probability, horizon_days=5000, resamples=1)["auroc"] is None


def test_grid_search_tries_every_point_on_patient_folds_and_keeps_the_best():
    train, y, groups = zoo_inputs(500, 2, "survival")
    candidate = parse_spec(raw("gist_recurrence"), "x").candidates[0]
    candidate = dataclasses.replace(candidate, inputs=("tabular", "ct"), grid={"max_depth": [1, 4], "n_estimators": [5, 80]},
                             params={"folds": 3})
    params, table = grid_search(Spec("survival"), candidate, train, y, groups, folds=3)
    assert [row["params"] for row in table] == [{"max_depth": 1, "n_estimators": 5}, {"max_depth": 1, "n_estimators": 80},
                                                {"max_depth": 4, "n_estimators": 5}, {"max_depth": 4, "n_estimators": 80}]
    assert all(len(row["folds"]) == 3 for row in table)
    best = max(table, key=lambda row: row["c_index"])
    assert params["base"]["tabular"] == best["params"] == params["base"]["ct"]
    assert best["c_index"] > min(row["c_index"] for row in table)


def test_training_selects_and_promotion_is_explicit(warehouse, tmp_path):
    model = make_candidate("late_fusion", ("tabular",), {"folds": 2}, 7, task="multiclass")
    inputs, y, groups = zoo_inputs(200, 3, "multiclass")
    model.fit(inputs, y, groups)
    rows = []
    for i, name in enumerate(("a", "b")):
        folder = tmp_path / name
        registry.Bundle("toy", f"v{i}-{name}", name, ("tabular",), {}, model, None, {}, {}).save(folder)
        rows.append({"model_name": "toy", "version": f"v{i}-{name}", "candidate": name, "task": "multiclass",
                     "spec_sha256": "x", "training_as_of": datetime(2026, 1, 1), "trained_at": datetime(2026, 1, 2),
                     "n_train": 1, "n_test": 1, "metrics_json": "{}", "artifact_uri": str(folder),
                     "report_uri": None, "data_snapshot": '{"rows": {}}', "code_version": "abc"})
    registry.register(warehouse, rows, "v1-b")
    assert registry.promoted(warehouse, "toy") is None        # training alone promotes nothing
    assert registry.promote(warehouse, "toy", home=tmp_path)["version"] == "v1-b"   # the selected one by default
    assert registry.promote(warehouse, "toy", "v0-a", home=tmp_path)["version"] == "v0-a"
    promoted = warehouse.read("SELECT version FROM vigil_models.model_versions WHERE promoted = :y", {"y": True})
    assert promoted["version"].tolist() == ["v0-a"]
    with pytest.raises(ValueError, match="no version v9 of model 'toy'"):
        registry.promote(warehouse, "toy", "v9", home=tmp_path)


def test_kaplan_meier_and_log_rank_match_their_reference_values():
    """The Kaplan-Meier curve of a hand-worked case, and the log-rank test of the Veterans'
    Administration lung cancer trial's two arms (the data scikit-survival ships): chi-square
    0.00823 on 1 df, p = 0.928, as R's ``survival::survdiff(Surv(time, status) ~ trt, veteran)``
    and scikit-survival's documentation report them."""
    from sksurv.datasets import load_veterans_lung_cancer

    from pipeline.modeling.metrics import group_survival, risk_groups

    worked = group_survival(np.array([1, 2, 3, 4, 1, 5.0]), np.array([1, 0, 1, 1, 0, 0]),
                            np.array(["low", "low", "low", "low", "high", "high"]))
    assert worked["groups"]["low"] == {"n": 4, "events": 3, "days": [1.0, 2.0, 3.0, 4.0],
                                       "surviving": [0.75, 0.75, 0.375, 0.0]}   # 3/4, then 3/4 x 1/2, then 0
    assert list(worked["groups"]) == ["low", "high"] and worked["groups"]["high"]["events"] == 0
    x, y = load_veterans_lung_cancer()
    trial = group_survival(y["Survival_in_days"], y["Status"], x["Treatment"].astype(str).to_numpy())
    assert trial["log_rank_chi2"] == pytest.approx(0.0082, abs=1e-4) and trial["log_rank_p"] == pytest.approx(0.928)
    assert trial["log_rank_df"] == 1 and sum(g["n"] for g in trial["groups"].values()) == 137
    tertiles = risk_groups(np.arange(9.0))
    assert tertiles.tolist() == ["low"] * 3 + ["medium"] * 3 + ["high"] * 3
    assert group_survival(np.ones(4), np.zeros(4), tertiles[:4]) is None   # no event: nothing to compare


@pytest.mark.parametrize("task", ["multiclass", "survival"])
def test_the_shap_summary_is_xgboosts_exact_treeshap_per_factor_and_class(task):
    """Per row and output, the factor groups' SHAP values plus XGBoost's bias add up to the
    tabular model's margin (TreeSHAP is exact); the summary ranks factors by mean |SHAP| per class."""
    from xgboost import DMatrix

    from pipeline.modeling.training_report import factor_importance

    train, y, groups = zoo_inputs(900, 0, task)
    test, _, _ = zoo_inputs(300, 1, task)
    model = LateFusionRisk(task=task, modalities=("tabular", "ct"), folds=3).fit(train, y, groups)
    names, values = model.factor_shap(test)
    assert names == ["age", "lab_x", "sex"] and values.shape == (300, 3 if task == "multiclass" else 1, 3)
    booster = model.fusion_.base_["tabular"].get_booster()
    matrix = DMatrix(model.preprocessor_.transform(test.tabular), feature_names=list(model.feature_names_))
    margin = booster.predict(matrix, output_margin=True).reshape(300, -1)
    bias = booster.predict(matrix, pred_contribs=True).reshape(300, margin.shape[1], -1)[..., -1]
    np.testing.assert_allclose(values.sum(axis=-1) + bias, margin, rtol=1e-4, atol=1e-4)
    summary = factor_importance(Spec(task), model, test)
    assert list(summary) == (["normal", "death", "bleeding"] if task == "multiclass" else ["log hazard"])
    for k, per_factor in enumerate(summary.values()):
        assert list(per_factor.values()) == sorted(per_factor.values(), reverse=True)
        assert per_factor["age"] == pytest.approx(np.abs(values[:, k, 0]).mean(), abs=1e-4)
    assert factor_importance(Spec(task), LateFusionRisk(task=task, modalities=("ct",), folds=3).fit(train, y, groups),
                             test) is None   # no tabular trees: no summary


def test_a_log_rank_test_that_cannot_be_computed_leaves_the_curves():
    """A group whose only member is censored before the first event has nobody at risk at any
    event time: the test's covariance is singular, so there is no test, but the curves stay."""
    from pipeline.modeling.metrics import group_survival

    out = group_survival(np.array([1, 5, 6, 7, 8, 9.0]), np.array([0, 1, 1, 0, 1, 0]),
                         np.array(["high", "low", "low", "medium", "medium", "low"]))
    assert out["log_rank_p"] is None and out["log_rank_chi2"] is None
    assert out["groups"]["high"] == {"n": 1, "events": 0, "days": [1.0], "surviving": [1.0]}
