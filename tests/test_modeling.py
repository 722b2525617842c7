"""Model specs, and the candidate estimators' scikit-learn contract."""

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.config import PROJECT_ROOT
from pipeline.modeling.estimators import EarlyFusionClassifier, XGBoostRisk, focal_loss
from pipeline.modeling.inputs import ModelInputs
from pipeline.modeling.spec import SpecError, load_spec, parse_spec

SPEC_PATH = PROJECT_ROOT / "models" / "icu_mortality.yaml"


def raw_spec():
    return yaml.safe_load(SPEC_PATH.read_text())


def test_the_shipped_spec_loads():
    spec = load_spec(PROJECT_ROOT / "models" / "icu_mortality.yaml")
    assert spec.name == "icu_mortality" and spec.task == "binary"
    assert {c.kind for c in spec.candidates} == {"xgboost", "early_fusion", "late_fusion"}
    assert spec.used_modalities() == ("tabular", "vitals", "notes", "ecg", "images")
    assert spec.source("vitals") == "events" and spec.poolings()["vitals"] == "bilstm"
    assert [spec.band(p) for p in (0.05, 0.1, 0.5)] == ["low", "medium", "high"]


@pytest.mark.parametrize("change, message", [
    (lambda r: r["features"].update(aggregations=["median"]), "features.aggregations: unknown"),
    (lambda r: r["candidates"][0].update(inputs=["tabular", "notes"]), "xgboost candidate reads the tabular input only"),
    (lambda r: r["candidates"][1].update(inputs=["tabular", "waveform"]), "unknown modality 'waveform'"),
    (lambda r: r.update(risk_bands=[{"name": "a", "below": 0.5}, {"name": "b", "below": 0.2}, {"name": "c"}]),
     "risk_bands must rise"),
    (lambda r: r.pop("label"), "missing required field 'label'"),
    (lambda r: r.update(task="survival"), "label.horizon_days: a survival task needs a positive horizon"),
    (lambda r: r.update(task="ordinal"), "task 'ordinal' is not supported yet"),
    (lambda r: r.update(operating_threshold=2), "operating_threshold must be between 0 and 1"),
    (lambda r: r["modalities"]["images"].update(pooling="max"), "modalities.images.pooling: 'max' is not one of"),
    (lambda r: r["modalities"]["vitals"].update(pooling="mean"), "modalities.vitals: an events modality reads"),
    (lambda r: r["features"].pop("sequence"), "modalities.vitals: an events modality reads features.sequence"),
    (lambda r: r["candidates"][0]["params"].update(resample="adasyn"), r"candidates\[0\].params.resample: 'adasyn'"),
    (lambda r: r["preprocessing"].update(imputation="knn"), "preprocessing.imputation must be one of"),
])
def test_spec_errors_name_the_field(change, message):
    raw = raw_spec()
    change(raw)
    with pytest.raises(SpecError, match=message):
        parse_spec(raw, "models/x.yaml")


def test_spec_name_must_match_its_file(tmp_path):
    raw = raw_spec()
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match="must match the file name"):
        load_spec(tmp_path / "other.yaml")


def toy_inputs(n=400, seed=0):
    """A label driven by one tabular column and by an embedding present for 60% of rows."""
    rng = np.random.default_rng(seed)
    signal_tab, signal_emb = rng.normal(size=n), rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(1.5 * signal_tab + 1.5 * signal_emb - 1)))).astype(int)
    tabular = pd.DataFrame({"lab": signal_tab + rng.normal(0, 0.3, n), "noise": rng.normal(size=n),
                            "sex": rng.choice(["F", "M"], n)})
    tabular.loc[rng.uniform(size=n) < 0.1, "lab"] = np.nan
    mask = rng.uniform(size=n) < 0.6
    embedding = np.column_stack([signal_emb, rng.normal(size=(n, 3))]).astype(np.float32)
    return ModelInputs(tabular=tabular, embeddings={"ecg": embedding}, masks={"ecg": mask}), y, np.arange(n)


@pytest.mark.parametrize("make", [
    lambda: XGBoostRisk(params={"n_estimators": 50, "max_depth": 2}),
    lambda: EarlyFusionClassifier(modalities=("tabular", "ecg"), epochs=30, patience=5),
])
def test_estimators_follow_the_scikit_learn_contract(make):
    inputs, y, groups = toy_inputs()
    model = make()
    before = copy.deepcopy(model.get_params())
    assert model.fit(inputs, y, groups) is model
    assert model.get_params() == before  # fit never rewrites parameters
    state = pickle.dumps(model)
    p1 = model.predict_risk(inputs)
    p2 = model.predict_risk(inputs)
    model.explain(inputs.take(range(5)), top_k=2)
    assert pickle.dumps(model) == state    # scoring and explaining never refit
    np.testing.assert_array_equal(p1, p2)
    assert p1.shape == (len(y),) and ((0 <= p1) & (p1 <= 1)).all()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, p1) > 0.7
    factors = model.explain(inputs.take([0]), top_k=2)[0]
    assert len(factors) == 2 and {"factor", "contribution", "value"} <= set(factors[0])


def test_fusion_uses_a_modality_when_present_and_scores_without_it():
    inputs, y, groups = toy_inputs(800)
    model = EarlyFusionClassifier(modalities=("tabular", "ecg"), epochs=60, patience=10).fit(inputs, y, groups)
    without = ModelInputs(inputs.tabular, inputs.embeddings, {"ecg": np.zeros(len(y), bool)})
    from sklearn.metrics import roc_auc_score

    present = inputs.masks["ecg"]
    assert roc_auc_score(y[present], model.predict_risk(inputs)[present]) > \
        roc_auc_score(y[present], model.predict_risk(without)[present]) + 0.05
    assert np.isfinite(model.predict_risk(without)).all()
    names = [f["factor"] for row in model.explain(inputs.take(np.flatnonzero(present)[:20]), top_k=5) for f in row]
    assert "ecg" in names


def test_early_fusion_explanations_are_shap_values_that_add_up_to_the_logit():
    """Integrated gradients (captum) from the training average: per row, the values sum to the
    logit's change from that baseline, the outcome's drivers rank first, and a row's values do
    not depend on the rows scored beside it."""
    inputs, y, groups = toy_inputs(800)
    model = EarlyFusionClassifier(modalities=("tabular", "ecg"), epochs=60, patience=10).fit(inputs, y, groups)
    rows = inputs.take(range(60))
    xs, masks = model._tensors(rows)
    shap = model._shap(xs, masks)
    total = shap["tabular"].sum(axis=1) + shap["ecg"]
    change = model._logits(xs, masks) - model._logits({m: torch.zeros_like(x) for m, x in xs.items()}, masks)
    assert np.corrcoef(total, change)[0, 1] > 0.95
    assert np.abs(total - change).mean() < 0.2 * np.abs(change).mean() + 0.02
    assert (shap["ecg"][~rows.masks["ecg"]] == 0).all()   # an absent modality contributes nothing
    first = [row[0]["factor"] for row in model.explain(rows, top_k=1)]
    assert sum(f in ("lab", "ecg") for f in first) >= 0.8 * len(first), first
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    assert model.explain(rows, top_k=3) == model.explain(rows, top_k=3)   # the same values every time
    np.testing.assert_array_equal(np.random.get_state()[1], before)       # and the caller's generator untouched
    alone = [model.explain(rows.take([i]), top_k=3)[0] for i in (0, 7, 59)]
    together = model.explain(rows, top_k=3)
    for row, i in zip(alone, (0, 7, 59)):
        assert [f["factor"] for f in row] == [f["factor"] for f in together[i]]
        np.testing.assert_allclose([f["contribution"] for f in row], [f["contribution"] for f in together[i]],
                                   atol=1e-4)


def test_focal_loss_reduces_to_weighted_cross_entropy_without_focusing():
    logits, target = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, 0.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert focal_loss(logits, target, alpha=0.5, gamma=0.0).item() == pytest.approx(0.5 * bce.item())
    assert focal_loss(logits, target, alpha=0.5, gamma=2.0) < focal_loss(logits, target, alpha=0.5, gamma=0.0)


def test_modalities_present_names_each_rows_inputs():
    inputs = ModelInputs(pd.DataFrame({"a": [1, 2]}), {"notes": np.zeros((2, 2)), "ecg": np.zeros((2, 2))},
                         {"notes": np.array([True, False]), "ecg": np.array([True, True])})
    assert inputs.modalities_present() == ["tabular+ecg+notes", "tabular+ecg"]


def test_xgboost_trains_on_rebalanced_rows_when_the_spec_asks():
    inputs, y, groups = toy_inputs(800)
    plain = XGBoostRisk(params={"n_estimators": 60, "max_depth": 2}, balance=0).fit(inputs, y, groups)
    resampled = XGBoostRisk(params={"n_estimators": 60, "max_depth": 2}, resample="smotenc",
                            calibration_folds=3).fit(inputs, y, groups)
    assert plain.resampled_rows_ == plain.training_rows_ == len(y)
    assert resampled.resampled_rows_ == 2 * np.bincount(y).max()  # SMOTENC: the minority grown to the majority
    p = resampled.predict_risk(inputs)
    assert np.isfinite(p).all() and abs(p.mean() - y.mean()) < 0.1  # still calibrated to the real prevalence
