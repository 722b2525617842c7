"""The candidate estimators against scikit-learn's estimator contract (the checks of
``sklearn.utils.estimator_checks``, scikit-learn 1.9).

Run as they are, for every estimator: the checks that read only the class, its constructor and
its parameters (check_no_attributes_set_in_init, check_parameters_default_constructible,
check_get_params_invariance, check_set_params, check_do_not_raise_errors_in_init_or_set_params,
check_estimator_cloneable, check_estimator_repr, check_estimator_tags_renamed,
check_valid_tag_types, check_mixin_order), and check_estimators_unfitted, which calls ``predict``
and ``predict_proba`` on an array before ``fit``: every prediction method checks first that the
model is fitted, so it raises NotFittedError before it reads its input.

Not applicable, and not run: every other check (and so ``check_estimator``) fits or scores numpy
arrays — make_blobs or regression matrices and their 1-D, one-feature, one-sample, sparse,
memmapped, F-contiguous, complex, object, NaN / inf, list, pandas, ``_NotAnArray`` and array-API
variants, sample weights, multi-output and multilabel targets — while these models read a
:class:`ModelInputs` (a frame of named clinical columns, plus embeddings and their masks).
What those checks guard that matters here is restated on ModelInputs below: ``fit`` returns
``self`` and leaves its parameters as they were (check_estimators_fit_returns_self,
check_dont_overwrite_parameters, check_estimators_overwrite_params, check_fit_check_is_fitted),
prediction changes no fitted state (check_dict_unchanged), a pickled model predicts the same
(check_estimators_pickle), an unfitted clone fits to the same model (check_fit_idempotent), and
``predict_proba`` / ``predict`` / ``score`` agree (check_classifiers_train).
"""

from __future__ import annotations

import copy
import functools
import pickle
from collections.abc import Callable

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score
from sklearn.utils import estimator_checks as checks
from sklearn.utils.validation import check_is_fitted

from pipeline.modeling.estimators import (ConcatenationRisk, EarlyFusionClassifier, LateFusionRisk, LogisticRisk,
                                          XGBoostRisk, make_candidate)
from pipeline.modeling.inputs import ModelInputs

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

MODALITIES = ("tabular", "ct")
LATE_BASE = {"tabular": {"n_estimators": 20, "max_depth": 2}, "ct": {"n_estimators": 20, "max_depth": 2}}

# name -> (an unfitted model, its task); forests with n_jobs=1: two threads sum trees in either order
ESTIMATORS: dict[str, tuple[Callable[[], BaseEstimator], str]] = {
    "xgboost": (lambda: XGBoostRisk(params={"n_estimators": 30, "max_depth": 2}, resample="smotenc", balance=0.2,
                                    calibration_folds=3, early_stopping_rounds=5), "binary"),
    "logistic": (lambda: LogisticRisk(C=0.5), "binary"),
    "early_fusion": (lambda: EarlyFusionClassifier(modalities=MODALITIES, hidden=8, epochs=5, patience=2), "binary"),
    "random_forest": (lambda: ConcatenationRisk(kind="random_forest", modalities=MODALITIES,
                                                params={"n_estimators": 30, "n_jobs": 1}, resample="smotenc",
                                                calibration_folds=3), "binary"),
    "mlp_multiclass": (lambda: ConcatenationRisk(kind="mlp", task="multiclass", modalities=MODALITIES,
                                                 params={"max_iter": 40}, calibration_folds=2), "multiclass"),
    "late_fusion_binary": (lambda: LateFusionRisk(modalities=MODALITIES, folds=3, base=LATE_BASE, resample="smotenc",
                                                  early_stopping_rounds=5), "binary"),
    "late_fusion_multiclass": (lambda: LateFusionRisk(task="multiclass", modalities=MODALITIES, folds=3,
                                                      base=LATE_BASE), "multiclass"),
    "late_fusion_survival": (lambda: LateFusionRisk(task="survival", modalities=MODALITIES, folds=3, base=LATE_BASE,
                                                    early_stopping_rounds=5, horizon_days=60.0), "survival"),
}

SKLEARN_CHECKS = [
    checks.check_no_attributes_set_in_init,
    checks.check_parameters_default_constructible,
    checks.check_get_params_invariance,
    checks.check_set_params,
    checks.check_do_not_raise_errors_in_init_or_set_params,
    checks.check_estimator_cloneable,
    checks.check_estimator_repr,
    checks.check_estimator_tags_renamed,
    checks.check_valid_tag_types,
    checks.check_mixin_order,
    checks.check_estimators_unfitted,
]


def data(task: str, n: int = 240, seed: int = 0) -> tuple[ModelInputs, np.ndarray, np.ndarray]:
    """Two tabular columns and a category, and an image-set modality missing for 30 % of rows,
    each carrying part of the outcome; two rows per patient."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    tabular = pd.DataFrame({"age": 60 + 10 * a + rng.normal(0, 3, n), "lab_x__last_24h": rng.normal(size=n),
                            "sex": rng.choice(["F", "M"], n)})
    images = np.stack([b[:, None] + rng.normal(0, 0.5, (n, 4)) for _ in range(2)], axis=1)   # (rows, 2 images, 4)
    mask = np.tile(rng.uniform(size=(n, 1)) > 0.3, (1, 2))
    inputs = ModelInputs(tabular=tabular, embeddings={"ct": images}, masks={"ct": mask})
    total = 1.3 * a + 1.3 * b
    if task == "binary":
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(total - 0.8)))).astype(int)
    elif task == "multiclass":
        logits = np.column_stack([np.zeros(n), total, 1.5 * a - 1.0 * b])
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        y = (rng.uniform(size=(n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    else:
        time, censor = rng.exponential(100 / np.exp(total)), rng.uniform(20, 300, n)
        y = np.column_stack([np.minimum(time, censor), (time <= censor).astype(float)])
    return inputs, y, np.arange(n) // 2


@functools.cache
def fitted(name: str) -> BaseEstimator:
    make, task = ESTIMATORS[name]
    return make().fit(*data(task))


@pytest.mark.parametrize("check", SKLEARN_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("name", ESTIMATORS)
def test_scikit_learn_checks_that_read_no_array(name, check):
    model = ESTIMATORS[name][0]()
    check(type(model).__name__, model)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_an_unfitted_clone_keeps_every_parameter_and_fits_to_the_same_model(name):
    model = fitted(name)
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        twin.predict_risk(data(ESTIMATORS[name][1], 20, 1)[0])
    before = joblib.hash(twin.get_params())
    assert twin.fit(*data(ESTIMATORS[name][1])) is twin
    assert joblib.hash(twin.get_params()) == before   # fit changed no parameter, not even inside a dict
    check_is_fitted(twin)
    test = data(ESTIMATORS[name][1], 80, 1)[0]
    np.testing.assert_array_equal(twin.predict_proba(test), model.predict_proba(test))


@pytest.mark.parametrize("name", ESTIMATORS)
def test_predict_proba_predict_and_score_agree_and_change_nothing(name):
    task = ESTIMATORS[name][1]
    model = fitted(name)
    test, y_test, _ = data(task, 80, 1)
    state = pickle.dumps(model)
    proba, risk, scored = model.predict_proba(test), model.predict_risk(test), model.scored(test, 2)
    classes = 3 if task == "multiclass" else 2
    np.testing.assert_array_equal(model.classes_, np.arange(classes))
    assert proba.shape == (len(test), classes) and ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    if task == "multiclass":
        np.testing.assert_array_equal(risk, 1 - proba[:, 0])
        np.testing.assert_array_equal(scored.outputs, proba)
    else:
        np.testing.assert_array_equal(proba[:, 1], risk)
    assert risk.shape == (len(test),)
    np.testing.assert_array_equal(scored.probability, risk)
    assert scored.factors == model.explain(test, 2)
    if task == "survival":
        with pytest.raises(ValueError, match="predicts no class"):
            model.predict(test)
        with pytest.raises(ValueError, match="predicts no class"):
            model.score(test, y_test)
    else:
        predicted = model.predict(test)
        np.testing.assert_array_equal(predicted, model.classes_[proba.argmax(axis=1)])
        assert model.score(test, y_test) == accuracy_score(y_test, predicted)
        assert model.score(test, y_test) > np.bincount(y_test).max() / len(y_test) - 0.1
    assert pickle.dumps(model) == state   # predicting, scoring and explaining never refit
    np.testing.assert_array_equal(pickle.loads(state).predict_proba(test), proba)


@pytest.mark.parametrize("name, option, default", [
    ("xgboost", "resample", "none"), ("xgboost", "balance", None), ("xgboost", "calibration_folds", 0),
    ("xgboost", "early_stopping_rounds", 0), ("random_forest", "resample", "none"),
    ("random_forest", "calibration_folds", 0),
])
def test_each_option_a_clone_keeps_changes_the_model(name, option, default):
    """The clone's identical probabilities above are no accident: each option matters."""
    model = fitted(name)
    assert model.get_params()[option] != default
    other = clone(model).set_params(**{option: default}).fit(*data("binary"))
    test = data("binary", 80, 1)[0]
    assert not np.array_equal(other.predict_proba(test), model.predict_proba(test))


@pytest.mark.parametrize("name, kind, params", [
    ("xgboost", "xgboost", {"n_estimators": 30, "max_depth": 2, "resample": "smotenc", "balance": 0.2,
                            "calibration_folds": 3, "early_stopping_rounds": 5}),
    ("random_forest", "random_forest", {"n_estimators": 30, "n_jobs": 1, "resample": "smotenc",
                                        "calibration_folds": 3}),
    ("mlp_multiclass", "mlp", {"max_iter": 40, "calibration_folds": 2}),
    ("late_fusion_binary", "late_fusion", {"folds": 3, "base": LATE_BASE, "resample": "smotenc",
                                           "early_stopping_rounds": 5}),
])
def test_make_candidate_puts_the_spec_keys_on_the_constructor(name, kind, params):
    task = ESTIMATORS[name][1]
    given = copy.deepcopy(params)
    model = make_candidate(kind, MODALITIES, params, 7, task=task)
    assert model.get_params() == ESTIMATORS[name][0]().get_params()
    if kind == "xgboost":
        assert model.params == {"n_estimators": 30, "max_depth": 2}
        model.fit(*data(task))
        np.testing.assert_array_equal(model.predict_proba(data(task, 80, 1)[0]),
                                      fitted(name).predict_proba(data(task, 80, 1)[0]))
    assert params == given


@pytest.mark.parametrize("model", [
    XGBoostRisk(params={"n_estimators": 5, "calibration_folds": 3}),
    ConcatenationRisk(params={"n_estimators": 5, "resample": "smotenc"}),
], ids=["xgboost", "random_forest"])
def test_an_option_left_in_params_is_an_error_not_a_library_parameter(model):
    with pytest.raises(ValueError, match=r"\['(calibration_folds|resample)'\] are constructor arguments"):
        model.fit(*data("binary"))


@pytest.mark.parametrize("resample, share", [("none", 0.5), ("smotenc", 0.0)])
def test_xgboost_balance_none_is_half_the_class_weighting_without_resampling_else_none(resample, share):
    inputs, y, groups = data("binary")
    test = data("binary", 80, 1)[0]
    default = XGBoostRisk(params={"n_estimators": 20}, resample=resample).fit(inputs, y, groups)
    explicit = XGBoostRisk(params={"n_estimators": 20}, resample=resample, balance=share).fit(inputs, y, groups)
    other = XGBoostRisk(params={"n_estimators": 20}, resample=resample, balance=0.3).fit(inputs, y, groups)
    np.testing.assert_array_equal(default.predict_proba(test), explicit.predict_proba(test))
    assert not np.array_equal(default.predict_proba(test), other.predict_proba(test))
