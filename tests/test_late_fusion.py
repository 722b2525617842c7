"""Late fusion by out-of-fold stacking, for binary, multiclass and survival tasks: the fused
model beats every single modality on held-out rows when the signal is spread across modalities,
a pure-noise modality gets no weight, and rows missing a modality fall back to the others."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from pipeline.modeling.late_fusion import LateFusion
from pipeline.modeling.metrics import harrell_c

MODALITIES = ("ehr", "ecg", "imaging")


def cohort(n: int, seed: int, task: str):
    """Three modalities, each an independent share of the risk, as 6 noisy features."""
    rng = np.random.default_rng(seed)
    risk = {m: rng.normal(size=n) for m in MODALITIES}
    features = {m: np.column_stack([risk[m] + rng.normal(0, 0.5, n), rng.normal(size=(n, 5))]) for m in MODALITIES}
    total = sum(risk.values())
    if task == "binary":
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(1.2 * total - 1)))).astype(int)
    elif task == "multiclass":  # 0 normal, 1 death, 2 bleeding: one direction per class
        logits = np.column_stack([np.zeros(n), 1.0 * (risk["ehr"] + risk["ecg"]), 1.0 * (risk["imaging"] - risk["ehr"])])
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        y = np.array([rng.choice(3, p=row) for row in p])
    else:
        time = rng.exponential(1 / np.exp(0.8 * total))
        censor = rng.exponential(np.median(time) * 2, n)
        y = (np.minimum(time, censor), time <= censor)
    present = {m: np.ones(n, bool) for m in MODALITIES}
    return features, present, y


def metric(task, y, scores):
    if task == "binary":
        return roc_auc_score(y, scores)
    if task == "multiclass":
        return accuracy_score(y, scores.argmax(1))
    return harrell_c(y[0], y[1], scores)


@pytest.mark.parametrize("task", ["binary", "multiclass", "survival"])
def test_fused_beats_every_single_modality_on_held_out_rows(task):
    features, present, y = cohort(1500, 0, task)
    test_x, test_present, test_y = cohort(800, 1, task)
    fused = LateFusion(task, folds=4).fit(features, present, y)
    assert len(fused.stackers_) == 7  # every combination of the three modalities
    fused_score = metric(task, test_y, fused.predict(test_x, test_present))
    for m in MODALITIES:
        alone = {k: v for k, v in test_present.items()}
        for other in MODALITIES:
            alone[other] = np.full(len(alone[other]), other == m)
        single = metric(task, test_y, fused.predict(test_x, alone))  # its single-modality stacker
        assert fused_score > single + 0.02, (task, m, fused_score, single)
    if task == "multiclass":
        probabilities = fused.predict(test_x, test_present)
        np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-6)


def test_a_noise_modality_gets_no_weight_because_stacking_is_out_of_fold():
    features, present, y = cohort(1500, 2, "binary")
    rng = np.random.default_rng(3)
    features["noise"] = rng.normal(size=(1500, 40))  # deep trees memorise it in-sample
    present["noise"] = np.ones(1500, bool)
    fused = LateFusion("binary", base_params={"noise": {"max_depth": 8, "n_estimators": 400}}, folds=4)
    fused.fit(features, present, y)
    coef = dict(zip(fused.modalities_, fused.stackers_[tuple(fused.modalities_)].coef_[0]))
    assert abs(coef["noise"]) < 0.25 * min(abs(coef[m]) for m in MODALITIES), coef


def test_rows_missing_a_modality_are_scored_from_the_others_and_say_so():
    features, present, y = cohort(1500, 4, "binary")
    present["imaging"] = np.random.default_rng(5).uniform(size=1500) < 0.6
    fused = LateFusion("binary", folds=4).fit(features, present, y)
    used = fused.modalities_used(present)
    assert {u for u, p in zip(used, present["imaging"]) if not p} == {("ehr", "ecg")}
    assert {u for u, p in zip(used, present["imaging"]) if p} == {MODALITIES}
    scores = fused.predict(features, present)
    assert np.isfinite(scores).all()
    terms = fused.contributions(features, present)
    missing = int(np.flatnonzero(~present["imaging"])[0])
    assert set(terms[missing]) == {"ehr", "ecg"}
    logit = np.log(scores[missing] / (1 - scores[missing]))
    intercept = fused.stackers_[("ehr", "ecg")].intercept_[0]
    assert logit == pytest.approx(intercept + sum(terms[missing].values()), abs=1e-3)  # terms add up to the score


@pytest.mark.parametrize("task", ["binary", "multiclass", "survival"])
def test_early_stopping_chooses_fewer_trees_than_an_overfitting_budget(task):
    """1000 fast trees on 600 rows overfit: early stopping on a patient-level inner split stops
    well short, and the held-out metric is no worse than the full budget's."""
    features, present, y = cohort(600, 2, task)
    test_x, test_present, test_y = cohort(800, 3, task)
    budget = {"n_estimators": 1000, "learning_rate": 0.3, "max_depth": 4}
    groups = np.arange(600) // 2   # two rows per patient: the inner split keeps them together
    full = LateFusion(task, {"ehr": budget}, folds=3).fit({"ehr": features["ehr"]}, {"ehr": present["ehr"]}, y,
                                                            groups)
    stopped = LateFusion(task, {"ehr": {**budget, "early_stopping_rounds": 20}}, folds=3).fit(
        {"ehr": features["ehr"]}, {"ehr": present["ehr"]}, y, groups)
    assert full.base_["ehr"].n_estimators == 1000
    assert stopped.base_["ehr"].n_estimators < 300, stopped.base_["ehr"].n_estimators
    held = ({"ehr": test_x["ehr"]}, {"ehr": test_present["ehr"]})
    assert metric(task, test_y, stopped.predict(*held)) >= metric(task, test_y, full.predict(*held)) - 0.01
