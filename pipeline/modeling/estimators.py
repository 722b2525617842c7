"""The candidate models, each a scikit-learn classifier over :class:`ModelInputs` (not an
array): ``__init__`` stores its hyper-parameters and nothing else, ``fit`` learns (including its
own preprocessing), never changes a parameter and returns ``self``, learned state ends in ``_``,
and nothing after ``fit`` refits. ``predict_proba`` gives ``(rows, classes)`` (survival: no event /
event by the horizon), ``predict`` the most probable of ``classes_`` and ``score(inputs, y)`` its
accuracy; ``predict_risk`` is the risk row's probability (of the positive class, of any class but
the first, or of the event by the horizon), ``explain`` its top factors and ``scored`` every output
of a risk row in one call. The fitted object is what training saves and nightly scoring loads.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold
from sklearn.utils.validation import check_is_fitted
from torch import nn
from xgboost import DMatrix, XGBClassifier

from pipeline.features.preprocess import fit_preprocessor
from pipeline.modeling.imbalance import Rebalanced, rebalance
from pipeline.modeling.late_fusion import LateFusion, early_stopped_trees
from pipeline.modeling.inputs import ModelInputs, presence
from pipeline.modeling.pooling import AttentionPool, BiLSTMPool


def feature_groups(names, raw: pd.DataFrame) -> dict[str, list[int]]:
    """Preprocessed columns grouped by what a clinician would call one factor.

    Every aggregate and missingness indicator of a code is one group (``lab_lactate``); the
    one-hot columns of a category are one group (``unit``); a static number is its own group.

    >>> feature_groups(["age", "lab_lactate__max_24h", "missingindicator_lab_lactate__max_24h", "sex_F"],
    ...                pd.DataFrame({"age": [1.0], "sex": ["F"]}))
    {'age': [0], 'lab_lactate': [1, 2], 'sex': [3]}
    """
    categorical = [c for c in raw.columns if not pd.api.types.is_numeric_dtype(raw[c])]
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        name = str(name).removeprefix("missingindicator_")
        group = next((c for c in categorical if name.startswith(f"{c}_")), name.split("__")[0])
        groups.setdefault(group, []).append(index)
    return groups


def _group_value(group: str, raw: pd.DataFrame, row: int):
    """What to show beside a factor: the static value, the category, or the latest measurement."""
    if group in raw.columns:
        column = group
    else:
        column = next((c for c in raw.columns if c.startswith(f"{group}__last_")), None)
        column = column or next((c for c in raw.columns if c.startswith(f"{group}__")), None)
    if column is None:
        return None
    value = raw[column].iloc[row]
    if pd.isna(value):
        return "not measured"
    return round(float(value), 4) if isinstance(value, (int, float, np.number)) else str(value)


def _factors(groups: dict[str, list[int]], contributions: np.ndarray, raw: pd.DataFrame,
             top_k: int) -> list[list[dict]]:
    """Top-|contribution| factors per row; ``contributions`` has one column per group. Ranked by
    the contribution as reported (4 decimals), ties in group order: float noise below that (a
    forest's trees summed by threads in any order) never reorders a row's factors."""
    names = list(groups)
    reported = np.round(contributions.astype("float64"), 4)
    out = []
    for i in range(contributions.shape[0]):
        order = np.argsort(-np.abs(reported[i]), kind="stable")[:top_k]
        out.append([{"factor": names[j], "contribution": float(reported[i, j]),
                     "value": _group_value(names[j], raw, i)} for j in order])
    return out


def tree_shap_by_factor(model: XGBClassifier, matrix: np.ndarray, feature_names, raw: pd.DataFrame
                        ) -> tuple[list[str], np.ndarray]:
    """XGBoost's exact TreeSHAP values of ``model`` summed per factor group (SHAP is additive):
    the group names and ``(rows, outputs, groups)`` — one output per class of a multiclass model,
    else one (log-odds or log hazard)."""
    shap = model.get_booster().predict(DMatrix(matrix, feature_names=list(feature_names)), pred_contribs=True)
    shap = (shap[:, None] if shap.ndim == 2 else shap)[..., :-1]
    groups = feature_groups(feature_names, raw)
    return list(groups), np.stack([shap[..., columns].sum(axis=-1) for columns in groups.values()], axis=-1)


@dataclass
class Scored:
    """A model's scores of its rows, all that a risk row holds: the probability, the top factors,
    the modalities used, each modality's contribution (``None`` where a model has no such terms)
    and, for multiclass / survival, the per-class probabilities or the log hazard."""
    probability: np.ndarray
    factors: list[list[dict]]
    modalities: list[str]
    contributions: list[dict | None]
    outputs: np.ndarray | None = None


def _two_columns(risk: np.ndarray) -> np.ndarray:
    """``predict_proba`` of a binary (or survival) risk: ``[1 - p, p]`` per row."""
    return np.column_stack([1.0 - risk, risk])


class _Scoring:
    """What every candidate adds to :class:`~sklearn.base.ClassifierMixin`: ``predict_proba`` and
    ``predict`` from the model's ``predict_risk`` (a multiclass model overrides ``predict_proba``),
    and ``scored``, every output of a nightly risk row in one call (a model overrides it where its
    outputs share work, e.g. the preprocessing of late fusion or the forward passes of early fusion).
    Its name is not ``score``: that is the mixin's accuracy on labelled rows."""

    task = "binary"

    def predict_proba(self, inputs: ModelInputs) -> np.ndarray:
        """``(rows, 2)``: ``[1 - p, p]`` of the risk ``p`` (:meth:`predict_risk`)."""
        return _two_columns(self.predict_risk(inputs))

    def predict(self, inputs: ModelInputs) -> np.ndarray:
        """The most probable of ``classes_`` per row."""
        proba = self.predict_proba(inputs)   # first: an unfitted model raises NotFittedError, not AttributeError
        return self.classes_[np.argmax(proba, axis=1)]

    def modality_contributions(self, inputs: ModelInputs) -> list[dict | None]:
        return [None] * len(inputs)

    def factor_shap(self, inputs: ModelInputs) -> tuple[list[str], np.ndarray] | None:
        """Exact TreeSHAP per factor group (:func:`tree_shap_by_factor`) where the model has
        boosted trees on the tabular input; ``None`` otherwise."""
        return None

    def scored(self, inputs: ModelInputs, top_k: int = 3) -> Scored:
        outputs = self.predict_outputs(inputs) if self.task != "binary" else None
        return Scored(self.predict_risk(inputs), self.explain(inputs, top_k), inputs.modalities_present(),
                      self.modality_contributions(inputs), outputs)


# the keys of a spec's flat ``params`` that are the model's own constructor arguments, not the library's
_XGBOOST_OPTIONS = ("resample", "balance", "calibration_folds", "early_stopping_rounds")
_CONCATENATION_OPTIONS = ("resample", "calibration_folds")


def _split_params(params: dict, own: tuple[str, ...]) -> tuple[dict, dict]:
    """A spec's flat ``params`` as (what goes to the library, the model's own constructor arguments)."""
    return {k: v for k, v in params.items() if k not in own}, {k: params[k] for k in own if k in params}


def _library_params(model, own: tuple[str, ...]) -> dict:
    """A copy of ``model.params``; one of the model's own constructor arguments there is an error
    (it would reach the library, which would ignore it or fail later)."""
    params = dict(model.params or {})
    misplaced = sorted(set(params) & set(own))
    if misplaced:
        raise ValueError(f"{type(model).__name__}: {misplaced} are constructor arguments, not keys of params")
    return params


def _row_terms(deltas: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> list[dict]:
    """Per row, each present modality's leave-one-modality-out delta (log-odds), rounded."""
    n = len(next(iter(present.values()))) if present else 0
    return [{m: round(float(deltas[m][i]), 4) for m in deltas if present[m][i]} for i in range(n)]


class XGBoostRisk(_Scoring, ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees on the tabular input; explanations are XGBoost's own SHAP values.

    ``params`` go to XGBoost. ``resample`` (``smotenc`` / ``cluster_centroids`` / a hybrid)
    rebalances the training rows, see :mod:`pipeline.modeling.imbalance`; ``balance`` is the share of full class
    re-weighting (``None``: 0.5 without resampling, else 0); ``calibration_folds`` (k >= 2) fits a
    Platt calibration on the out-of-fold margins of k patient-level folds of the training rows;
    ``early_stopping_rounds`` (> 0) keeps as many trees as early stopping on a patient-level inner
    split chose, see :func:`~pipeline.modeling.late_fusion.early_stopped_trees`."""

    def __init__(self, params: dict | None = None, resample: str = "none", balance: float | None = None,
                 calibration_folds: int = 0, early_stopping_rounds: int = 0, preprocessing: dict | None = None,
                 seed: int = 7):
        self.params = params
        self.resample = resample
        self.balance = balance
        self.calibration_folds = calibration_folds
        self.early_stopping_rounds = early_stopping_rounds
        self.preprocessing = preprocessing
        self.seed = seed

    def _booster(self, params: dict, y: np.ndarray, balance: float) -> XGBClassifier:
        positives = max(1, int(y.sum()))
        weight = (len(y) - positives) / positives * balance if balance > 0 else 1.0
        return XGBClassifier(**params, random_state=self.seed, n_jobs=2, scale_pos_weight=weight,
                             eval_metric="logloss")

    def fit(self, inputs: ModelInputs, y: np.ndarray, groups: np.ndarray | None = None) -> XGBoostRisk:
        params = _library_params(self, _XGBOOST_OPTIONS)
        resample = self.resample
        balance = float(self.balance if self.balance is not None else 0.5 if resample == "none" else 0.0)
        folds = int(self.calibration_folds or 0)
        rounds = int(self.early_stopping_rounds or 0)
        self.preprocessor_, rows = fit_preprocessor(self.preprocessing or {}, inputs.tabular, y)
        self.training_rows_ = int(rows.sum())
        self.feature_names_ = self.preprocessor_.get_feature_names_out()
        y = y[rows]
        matrix = self.preprocessor_.transform(inputs.tabular[rows])
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)[rows]
        self.n_trees_ = None
        if rounds > 0:
            self.n_trees_ = early_stopped_trees(self._booster(params, y, balance), matrix, y, groups, rounds, self.seed,
                                                lambda a, b: rebalance(a, b, resample, seed=self.seed))
            params["n_estimators"] = self.n_trees_
        self.calibrator_ = None
        if folds >= 2:
            margins = np.zeros(len(y))
            splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=self.seed)
            for train_rows, held_rows in splitter.split(matrix, y, groups):
                fold_x, fold_y = rebalance(matrix[train_rows], y[train_rows], resample, seed=self.seed)
                fold_model = self._booster(params, fold_y, balance).fit(fold_x, fold_y)
                margins[held_rows] = fold_model.predict(matrix[held_rows], output_margin=True)
            self.calibrator_ = LogisticRegression().fit(margins[:, None], y)
        fit_x, fit_y = rebalance(matrix, y, resample, seed=self.seed)
        self.resampled_rows_ = int(len(fit_y))
        self.model_ = self._booster(params, fit_y, balance).fit(fit_x, fit_y)
        self.classes_ = np.arange(2)
        return self

    def predict_risk(self, inputs: ModelInputs) -> np.ndarray:
        """P(positive) per row."""
        check_is_fitted(self)
        matrix = self.preprocessor_.transform(inputs.tabular)
        if getattr(self, "calibrator_", None) is None:
            return self.model_.predict_proba(matrix)[:, 1]
        return self.calibrator_.predict_proba(self.model_.predict(matrix, output_margin=True)[:, None])[:, 1]

    def factor_shap(self, inputs: ModelInputs) -> tuple[list[str], np.ndarray]:
        check_is_fitted(self)
        return tree_shap_by_factor(self.model_, self.preprocessor_.transform(inputs.tabular), self.feature_names_,
                                   inputs.tabular)

    def explain(self, inputs: ModelInputs, top_k: int = 3) -> list[list[dict]]:
        """XGBoost's own SHAP values (log-odds), summed per factor group (SHAP is additive)."""
        check_is_fitted(self)
        matrix = DMatrix(self.preprocessor_.transform(inputs.tabular), feature_names=list(self.feature_names_))
        shap = self.model_.get_booster().predict(matrix, pred_contribs=True)[:, :-1]
        groups = feature_groups(self.feature_names_, inputs.tabular)
        summed = np.column_stack([shap[:, columns].sum(axis=1) for columns in groups.values()])
        return _factors(groups, summed, inputs.tabular, top_k)


class _FusionNet(nn.Module):
    """Per-modality projections (a set of records is first attention- or BiLSTM-pooled),
    concatenated with the presence of each modality, into an MLP head."""

    def __init__(self, dims: dict[str, int], hidden: int, dropout: float, sets: dict[str, str] | None = None):
        super().__init__()
        self.order = list(dims)
        self.pools = nn.ModuleDict({m: BiLSTMPool(dims[m], hidden) if kind == "bilstm" else AttentionPool(dims[m], hidden)
                                    for m, kind in (sets or {}).items()})
        width = {m: self.pools[m].out_dim if m in self.pools else d for m, d in dims.items()}
        self.branches = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(width[m], hidden), nn.ReLU(), nn.Dropout(dropout)) for m in dims
        })
        self.head = nn.Sequential(nn.Linear(hidden * len(dims) + len(dims), hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, xs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        present = {m: masks[m].amax(dim=1) if m in self.pools else masks[m] for m in self.order}
        pooled = {m: self.pools[m](xs[m], masks[m]) if m in self.pools else xs[m] for m in self.order}
        parts = [self.branches[m](pooled[m]) * present[m][:, None] for m in self.order]
        parts.append(torch.stack([present[m] for m in self.order], dim=1))
        return self.head(torch.cat(parts, dim=1)).squeeze(-1)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017): down-weights easy examples by ``(1 - p_t) ** gamma``."""
    p = torch.sigmoid(logits)
    ce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (alpha_t * (1 - p_t) ** gamma * ce).mean()


class EarlyFusionClassifier(_Scoring, ClassifierMixin, BaseEstimator):
    """Early fusion: per-modality projections of the tabular vector and each embedding,
    concatenated with the presence masks into an MLP. Trained with focal loss, L2 (weight
    decay), dropout and modality dropout, early-stopped on a patient-level inner split whose
    logits also fit a Platt calibration. A missing modality is a zero mask, never an error.
    Explanations are Shapley values by integrated gradients (``shap_samples`` quadrature steps
    per row)."""

    shap_samples = 32

    def __init__(self, modalities: tuple[str, ...] = ("tabular",), preprocessing: dict | None = None,
                 hidden: int = 32, dropout: float = 0.3,
                 weight_decay: float = 1e-3, learning_rate: float = 2e-3, epochs: int = 150, patience: int = 15,
                 batch_size: int = 128, focal_alpha: float = 0.5, focal_gamma: float = 1.5,
                 modality_dropout: float = 0.15, sequence_pooling: dict[str, str] | None = None, seed: int = 7):
        self.modalities = modalities
        self.sequence_pooling = sequence_pooling
        self.preprocessing = preprocessing
        self.hidden = hidden
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.modality_dropout = modality_dropout
        self.seed = seed

    # -- tensors -------------------------------------------------------------------------

    def _tensors(self, inputs: ModelInputs) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        xs = {"tabular": torch.tensor(self.preprocessor_.transform(inputs.tabular), dtype=torch.float32)}
        masks = {"tabular": torch.ones(len(inputs))}
        for m in self.embedded_:
            mask = inputs.masks[m].astype(bool)
            scaled = (inputs.embeddings[m] - self.embedding_mean_[m]) / self.embedding_scale_[m]
            scaled = np.nan_to_num(scaled)  # an unmeasured code in a window of an events sequence: the mean
            xs[m] = torch.tensor(np.where(mask[..., None], scaled, 0.0), dtype=torch.float32)
            masks[m] = torch.tensor(mask, dtype=torch.float32)
        return xs, masks

    def _logits(self, xs, masks) -> np.ndarray:
        self.net_.eval()
        with torch.inference_mode():
            return self.net_(xs, masks).numpy()

    # -- contract ------------------------------------------------------------------------

    def fit(self, inputs: ModelInputs, y: np.ndarray, groups: np.ndarray | None = None) -> EarlyFusionClassifier:
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        fit_rows, val_rows = next(GroupShuffleSplit(1, test_size=0.2, random_state=self.seed).split(y, y, groups))
        self.preprocessor_, kept = fit_preprocessor(self.preprocessing or {}, inputs.tabular.iloc[fit_rows], y[fit_rows])
        fit_rows = fit_rows[kept]
        self.training_rows_ = int(len(fit_rows))
        self.feature_names_ = self.preprocessor_.get_feature_names_out()
        self.embedded_ = [m for m in self.modalities if m != "tabular"]
        self.embedding_mean_, self.embedding_scale_ = {}, {}
        for m in self.embedded_:
            present = inputs.embeddings[m][fit_rows][inputs.masks[m][fit_rows].astype(bool)]
            with warnings.catch_warnings():  # a code never measured in any window: mean 0, scale 1
                warnings.simplefilter("ignore", RuntimeWarning)
                self.embedding_mean_[m] = np.nan_to_num(np.nanmean(present, axis=0)) if len(present) else 0.0
                self.embedding_scale_[m] = (np.nan_to_num(np.nanstd(present, axis=0), nan=1.0) + 1e-6
                                            if len(present) else 1.0)
        xs, masks = self._tensors(inputs)
        target = torch.tensor(y, dtype=torch.float32)
        dims = {m: x.shape[-1] for m, x in xs.items()}
        sets = {m: (self.sequence_pooling or {}).get(m, "attention") for m in self.embedded_ if xs[m].dim() == 3}
        self.net_ = _FusionNet(dims, self.hidden, self.dropout, sets)
        optimiser = torch.optim.AdamW(self.net_.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        take = lambda d, rows: {k: v[rows] for k, v in d.items()}  # noqa: E731
        val_x, val_m = take(xs, val_rows), take(masks, val_rows)
        best, best_state, waited = -np.inf, None, 0
        for _ in range(self.epochs):
            self.net_.train()
            order = rng.permutation(fit_rows)
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch_masks = take(masks, rows)
                for m in self.embedded_:  # modality dropout: learn to score without each input
                    keep = torch.tensor(rng.uniform(size=len(rows)) >= self.modality_dropout, dtype=torch.float32)
                    batch_masks[m] = batch_masks[m] * keep.view(-1, *[1] * (batch_masks[m].dim() - 1))
                loss = focal_loss(self.net_(take(xs, rows), batch_masks), target[rows],
                                  self.focal_alpha, self.focal_gamma)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            score = roc_auc_score(y[val_rows], self._logits(val_x, val_m)) if len(set(y[val_rows])) > 1 else 0.0
            if score > best + 1e-4:
                best, waited = score, 0
                best_state = {k: v.detach().clone() for k, v in self.net_.state_dict().items()}
            else:
                waited += 1
                if waited >= self.patience:
                    break
        self.net_.load_state_dict(best_state)
        self.validation_auroc_ = float(best)
        self.calibrator_ = LogisticRegression().fit(self._logits(val_x, val_m)[:, None], y[val_rows])
        self.classes_ = np.arange(2)
        return self

    def predict_risk(self, inputs: ModelInputs) -> np.ndarray:
        """P(positive) per row."""
        check_is_fitted(self)
        xs, masks = self._tensors(inputs)
        return self.calibrator_.predict_proba(self._logits(xs, masks)[:, None])[:, 1]

    def _shap(self, xs, masks) -> dict[str, np.ndarray]:
        """Shapley values of the logit per input (captum's IntegratedGradients: the Aumann-Shapley
        path from the training average, 0 after scaling, to the row), summed over each input's
        elements except the tabular features': ``{"tabular": (rows, features), modality: (rows,)}``.
        The masks stay the row's own, so an absent modality contributes nothing. No random draws:
        a row's values depend on that row alone, not on the others scored beside it (a night's
        shards give the factors the whole night gives)."""
        names = list(xs)

        def logit(*tensors):
            return self.net_(dict(zip(names, tensors[:len(names)])), dict(zip(names, tensors[len(names):])))

        self.net_.eval()
        with torch.backends.cudnn.flags(enabled=False):  # cuDNN's LSTM has no backward in eval mode
            values = IntegratedGradients(logit).attribute(
                tuple(xs[m] for m in names), baselines=tuple(torch.zeros((1, *xs[m].shape[1:])) for m in names),
                n_steps=self.shap_samples, additional_forward_args=tuple(masks[m] for m in names))
        out = {}
        for m, value in zip(names, values):
            value = value.detach().numpy()
            out[m] = value if m == "tabular" else value.reshape(len(value), -1).sum(axis=1)
        return out

    def _withheld(self, xs, masks, base: np.ndarray) -> list[dict]:
        """Per row, each present embedded modality's leave-one-modality-out delta in log-odds."""
        deltas = {m: base - self._logits(xs, {**masks, m: torch.zeros_like(masks[m])}) for m in self.embedded_}
        return _row_terms(deltas, {m: presence(masks[m].numpy() > 0) for m in self.embedded_})

    def _explained(self, inputs: ModelInputs, top_k: int):
        """Logits, the top SHAP factors, and the leave-one-modality-out deltas."""
        check_is_fitted(self)
        xs, masks = self._tensors(inputs)
        base = self._logits(xs, masks)
        shap = self._shap(xs, masks)
        groups = feature_groups(self.feature_names_, inputs.tabular)
        columns = [shap["tabular"][:, indices].sum(axis=1) for indices in groups.values()]
        for m in self.embedded_:
            columns.append(shap[m])
            groups[m] = []
        return base, _factors(groups, np.column_stack(columns), inputs.tabular, top_k), self._withheld(xs, masks, base)

    def explain(self, inputs: ModelInputs, top_k: int = 3) -> list[list[dict]]:
        """SHAP values in log-odds (see :meth:`_shap`) summed per factor group, and per embedded modality."""
        return self._explained(inputs, top_k)[1]

    def modality_contributions(self, inputs: ModelInputs) -> list[dict]:
        check_is_fitted(self)
        xs, masks = self._tensors(inputs)
        return self._withheld(xs, masks, self._logits(xs, masks))

    def scored(self, inputs: ModelInputs, top_k: int = 3) -> Scored:
        base, factors, terms = self._explained(inputs, top_k)
        return Scored(self.calibrator_.predict_proba(base[:, None])[:, 1], factors, inputs.modalities_present(), terms)


class LogisticRisk(_Scoring, ClassifierMixin, BaseEstimator):
    """L2-regularised logistic regression on the same preprocessed tabular input: the baseline
    every tabular model is measured against. Explanations are coefficient × scaled value."""

    def __init__(self, C: float = 0.1, preprocessing: dict | None = None, seed: int = 7):
        self.C = C
        self.preprocessing = preprocessing
        self.seed = seed

    def fit(self, inputs: ModelInputs, y: np.ndarray, groups: np.ndarray | None = None) -> LogisticRisk:
        self.preprocessor_, rows = fit_preprocessor(self.preprocessing or {}, inputs.tabular, y)
        self.training_rows_ = int(rows.sum())
        self.feature_names_ = self.preprocessor_.get_feature_names_out()
        self.model_ = LogisticRegression(C=self.C, max_iter=5000, random_state=self.seed)
        self.model_.fit(self.preprocessor_.transform(inputs.tabular[rows]), y[rows])
        self.classes_ = np.arange(2)
        return self

    def predict_risk(self, inputs: ModelInputs) -> np.ndarray:
        """P(positive) per row."""
        check_is_fitted(self)
        return self.model_.predict_proba(self.preprocessor_.transform(inputs.tabular))[:, 1]

    def explain(self, inputs: ModelInputs, top_k: int = 3) -> list[list[dict]]:
        check_is_fitted(self)
        terms = self.preprocessor_.transform(inputs.tabular) * self.model_.coef_[0]
        groups = feature_groups(self.feature_names_, inputs.tabular)
        summed = np.column_stack([terms[:, columns].sum(axis=1) for columns in groups.values()])
        return _factors(groups, summed, inputs.tabular, top_k)


def pooled_vectors(inputs: ModelInputs, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """One vector per row: a record set ``(rows, records, dim)`` is averaged over its present
    records; with the row's presence."""
    vectors, mask = inputs.embeddings[modality], np.asarray(inputs.masks[modality], dtype=bool)
    if vectors.ndim == 3:
        weights = mask[..., None].astype(float)
        vectors = (vectors * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
    return np.where(presence(mask)[:, None], vectors, np.nan), presence(mask)


class ConcatenationRisk(_Scoring, ClassifierMixin, BaseEstimator):
    """Feature-level fusion through a scikit-learn classifier, for binary and multiclass tasks:
    the preprocessed tabular features, then each embedded modality's pooled vector (standardised
    on the training rows; 0 where absent) and its presence flag, into a random forest
    (``random_forest``, class-balanced) or an MLP with L2 penalty and early stopping (``mlp``),
    ``params`` going to that scikit-learn classifier. ``resample`` rebalances the training rows
    first. ``calibration_folds`` (k >= 2) calibrates the probabilities with scikit-learn's sigmoid
    calibration on the out-of-fold predictions of k patient-level folds (each fold's model
    rebalanced on its own training rows), the classifier itself refitted on every row.
    Explanations are occlusions in log-odds against the first class: each factor group, then each
    modality, set to the training mean."""

    def __init__(self, kind: str = "random_forest", task: str = "binary", modalities: tuple[str, ...] = ("tabular",),
                 preprocessing: dict | None = None, params: dict | None = None, resample: str = "none",
                 calibration_folds: int = 0, seed: int = 7):
        self.kind = kind
        self.task = task
        self.modalities = modalities
        self.preprocessing = preprocessing
        self.params = params
        self.resample = resample
        self.calibration_folds = calibration_folds
        self.seed = seed

    def _matrix(self, inputs: ModelInputs) -> np.ndarray:
        parts = [self.preprocessor_.transform(inputs.tabular)]
        for m in self.embedded_:
            vectors, present = pooled_vectors(inputs, m)
            scaled = (vectors - self.embedding_mean_[m]) / self.embedding_scale_[m]
            parts += [np.where(present[:, None], np.nan_to_num(scaled), 0.0), present[:, None].astype(float)]
        return np.hstack(parts)

    def fit(self, inputs: ModelInputs, y: np.ndarray, groups: np.ndarray | None = None) -> ConcatenationRisk:
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.neural_network import MLPClassifier

        y = np.asarray(y).astype(int)
        self.preprocessor_, rows = fit_preprocessor(self.preprocessing or {}, inputs.tabular, y)
        self.feature_names_ = self.preprocessor_.get_feature_names_out()
        self.embedded_ = [m for m in self.modalities if m != "tabular"]
        self.embedding_mean_, self.embedding_scale_, self.widths_ = {}, {}, {}
        for m in self.embedded_:
            vectors, present = pooled_vectors(inputs.take(np.flatnonzero(rows)), m)
            self.widths_[m] = vectors.shape[1] + 1   # the pooled vector and its presence flag
            self.embedding_mean_[m] = vectors[present].mean(axis=0) if present.any() else 0.0
            self.embedding_scale_[m] = vectors[present].std(axis=0) + 1e-6 if present.any() else 1.0
        options = _library_params(self, _CONCATENATION_OPTIONS)
        folds = int(self.calibration_folds or 0)
        if self.kind == "random_forest":
            options = {"n_estimators": 300, "min_samples_leaf": 3, "class_weight": "balanced", "n_jobs": 2, **options}
            self.model_ = RandomForestClassifier(random_state=self.seed, **options)
        else:
            options = {"hidden_layer_sizes": (64,), "alpha": 1e-3, "early_stopping": True, "max_iter": 500, **options}
            options["hidden_layer_sizes"] = tuple(np.atleast_1d(options["hidden_layer_sizes"]).tolist())
            self.model_ = MLPClassifier(random_state=self.seed, **options)
        self.model_ = Rebalanced(self.model_, self.resample, self.seed)
        matrix, y = self._matrix(inputs.take(np.flatnonzero(rows))), y[rows]
        if folds >= 2:
            groups = np.arange(len(y)) if groups is None else np.asarray(groups)[rows]
            splits = list(StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=self.seed)
                          .split(matrix, y, groups))
            self.model_ = CalibratedClassifierCV(self.model_, method="sigmoid", cv=splits, ensemble=False)
        self.model_.fit(matrix, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_outputs(self, inputs: ModelInputs) -> np.ndarray:
        """Binary: P(positive); multiclass: ``(rows, classes)``."""
        check_is_fitted(self)
        p = self.model_.predict_proba(self._matrix(inputs))
        return p[:, 1] if self.task == "binary" else p

    def predict_risk(self, inputs: ModelInputs) -> np.ndarray:
        """P(positive), or P(any class but the first), per row."""
        out = self.predict_outputs(inputs)
        return out if self.task == "binary" else 1.0 - out[:, 0]

    def predict_proba(self, inputs: ModelInputs) -> np.ndarray:
        """``(rows, 2)`` ``[1 - p, p]`` (binary) or ``(rows, classes)``."""
        return _two_columns(self.predict_risk(inputs)) if self.task == "binary" else self.predict_outputs(inputs)

    def _risk_logit(self, matrix: np.ndarray) -> np.ndarray:
        p = np.clip(self.model_.predict_proba(matrix)[:, 0], 1e-6, 1 - 1e-6)
        return np.log((1 - p) / p)

    def _occlusions(self, inputs: ModelInputs):
        """Per factor group and per embedded modality, the risk log-odds change when it is set
        to the training mean (a modality: as if absent)."""
        check_is_fitted(self)
        matrix = self._matrix(inputs)
        base = self._risk_logit(matrix)
        groups = feature_groups(self.feature_names_, inputs.tabular)
        columns = []
        for indices in groups.values():
            occluded = matrix.copy()
            occluded[:, indices] = 0.0   # the training mean after z-scoring
            columns.append(base - self._risk_logit(occluded))
        deltas, start = {}, len(self.feature_names_)
        for m in self.embedded_:
            occluded = matrix.copy()
            occluded[:, start:start + self.widths_[m]] = 0.0   # as if absent
            deltas[m] = base - self._risk_logit(occluded)
            start += self.widths_[m]
        return groups, columns, deltas

    def explain(self, inputs: ModelInputs, top_k: int = 3) -> list[list[dict]]:
        groups, columns, deltas = self._occlusions(inputs)
        for m, delta in deltas.items():
            columns.append(delta)
            groups[m] = []
        return _factors(groups, np.column_stack(columns), inputs.tabular, top_k)

    def modality_contributions(self, inputs: ModelInputs) -> list[dict]:
        """Per row, each present embedded modality's occlusion delta in risk log-odds."""
        deltas = self._occlusions(inputs)[2]
        return _row_terms(deltas, {m: pooled_vectors(inputs, m)[1] for m in self.embedded_})


class LateFusionRisk(_Scoring, ClassifierMixin, BaseEstimator):
    """Late fusion on :class:`ModelInputs` for every task (see :mod:`pipeline.modeling.late_fusion`):
    an XGBoost base model per modality — the tabular one on the preprocessed (imputed, selected)
    features, optionally rebalanced; each embedded one on its pooled vector — stacked out of fold;
    ``early_stopping_rounds`` (> 0) lets early stopping choose each base model's number of trees.

    ``y``: class index (binary / multiclass) or, for survival, ``(rows, 2)`` of (days, event).
    :meth:`predict_risk` is the risk row's probability: P(positive), P(any class but the first), or
    P(event within ``horizon_days``); :meth:`predict_outputs` adds the per-class probabilities or
    the log hazard, :meth:`modality_contributions` each modality's stacker term. A survival model's
    ``predict_proba`` is (no event, event) by ``horizon_days`` and ``classes_`` ``[0, 1]``, but it
    has no ``predict`` (nor accuracy ``score``): a censored row has no class to compare with."""

    def __init__(self, task: str = "binary", modalities: tuple[str, ...] = ("tabular",),
                 preprocessing: dict | None = None, folds: int = 5, base: dict | None = None,
                 resample: str = "none", horizon_days: float | None = None, early_stopping_rounds: int = 0,
                 seed: int = 7):
        self.task = task
        self.modalities = modalities
        self.preprocessing = preprocessing
        self.folds = folds
        self.base = base
        self.resample = resample
        self.horizon_days = horizon_days
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed

    def _features(self, inputs: ModelInputs) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        check_is_fitted(self)
        features, present = {}, {}
        if "tabular" in self.modalities:
            features["tabular"] = self.preprocessor_.transform(inputs.tabular)
            present["tabular"] = np.ones(len(inputs), dtype=bool)
        for m in self.modalities:
            if m != "tabular":
                features[m], present[m] = pooled_vectors(inputs, m)
        return features, present

    def _labels(self, y):
        y = np.asarray(y)
        return (y[:, 0], y[:, 1]) if self.task == "survival" else y.astype(int)

    def fit(self, inputs: ModelInputs, y: np.ndarray, groups: np.ndarray | None = None) -> LateFusionRisk:
        y = np.asarray(y)
        selection_target = y[:, 1].astype(int) if self.task == "survival" else y.astype(int)
        self.preprocessor_, kept = fit_preprocessor(self.preprocessing or {}, inputs.tabular, selection_target)
        self.feature_names_ = self.preprocessor_.get_feature_names_out()
        features, present = self._features(inputs)
        if "tabular" in present:
            present["tabular"] = kept  # rows the preprocessing dropped train the other modalities only
        base = {m: {"early_stopping_rounds": self.early_stopping_rounds, **(self.base or {}).get(m, {})}
                for m in features}
        self.fusion_ = LateFusion(self.task, base, folds=self.folds,
                                  seed=self.seed, resample={"tabular": self.resample})
        self.fusion_.fit(features, present, self._labels(y), groups)
        self.classes_ = np.arange(self.fusion_.classes_)   # survival: 2, no event / event by the horizon
        return self

    def predict_outputs(self, inputs: ModelInputs, only: tuple[str, ...] | None = None) -> np.ndarray:
        """Binary: P(positive); multiclass: ``(rows, classes)``; survival: log hazard."""
        return self.fusion_.predict(*self._features(inputs), only=only)

    def _probability(self, features, present, only=None) -> np.ndarray:
        if self.task == "survival":
            return self.fusion_.predict(features, present, only=only, horizon=self.horizon_days)
        out = self.fusion_.predict(features, present, only=only)
        return 1.0 - out[:, 0] if self.task == "multiclass" else out

    def predict_risk(self, inputs: ModelInputs, only: tuple[str, ...] | None = None) -> np.ndarray:
        """P(positive), P(any class but the first) or P(event within ``horizon_days``) per row;
        ``only``: from that subset's stacker (see :meth:`LateFusion.predict`)."""
        return self._probability(*self._features(inputs), only=only)

    def predict_proba(self, inputs: ModelInputs, only: tuple[str, ...] | None = None) -> np.ndarray:
        """``(rows, classes)`` (multiclass) or ``[1 - p, p]`` of :meth:`predict_risk`."""
        features, present = self._features(inputs)
        if self.task == "survival" and self.horizon_days is None:
            raise ValueError("a survival LateFusionRisk needs horizon_days for probabilities")
        if self.task == "multiclass":
            return self.fusion_.predict(features, present, only=only)
        return _two_columns(self._probability(features, present, only=only))

    def predict(self, inputs: ModelInputs) -> np.ndarray:
        check_is_fitted(self)
        if self.task == "survival":
            raise ValueError("a survival LateFusionRisk predicts no class: predict_risk gives P(event within "
                             "horizon_days), predict_outputs the log hazard")
        return super().predict(inputs)

    def complete_cases(self, inputs: ModelInputs) -> np.ndarray:
        """The rows that have every one of this model's modalities."""
        return np.flatnonzero(np.all(list(self._features(inputs)[1].values()), axis=0))

    def modalities_used(self, inputs: ModelInputs) -> list[str]:
        return ["+".join(s) for s in self.fusion_.modalities_used(self._features(inputs)[1])]

    def modality_contributions(self, inputs: ModelInputs) -> list[dict]:
        return self.fusion_.contributions(*self._features(inputs))

    def explain(self, inputs: ModelInputs, top_k: int = 3) -> list[list[dict]]:
        """The tabular base model's own TreeSHAP values (log-odds or log hazard; multiclass:
        against the first class's log-odds, so that a positive factor raises the risk row's
        probability of any other class), grouped per factor, then each embedded modality's
        stacker term (multiclass: likewise against the first class) as a factor of its own."""
        features, present = self._features(inputs)
        return self._explain(inputs, features, self.fusion_.contributions(features, present), top_k)

    def factor_shap(self, inputs: ModelInputs) -> tuple[list[str], np.ndarray] | None:
        """The tabular base model's TreeSHAP per factor group (per class for multiclass)."""
        check_is_fitted(self)
        if "tabular" not in self.modalities:
            return None
        return tree_shap_by_factor(self.fusion_.base_["tabular"], self.preprocessor_.transform(inputs.tabular),
                                   self.feature_names_, inputs.tabular)

    def _explain(self, inputs: ModelInputs, features, contributions: list[dict], top_k: int) -> list[list[dict]]:
        groups: dict[str, list[int]] = {}
        columns = []
        if "tabular" in self.modalities:
            matrix = DMatrix(features["tabular"], feature_names=list(self.feature_names_))
            shap = self.fusion_.base_["tabular"].get_booster().predict(matrix, pred_contribs=True)
            if shap.ndim == 3:  # multiclass (rows, classes, features + 1): against the first class, as the risk is
                shap = -shap[:, 0]
            shap = shap[:, :-1]
            groups = feature_groups(self.feature_names_, inputs.tabular)
            columns = [shap[:, c].sum(axis=1) for c in groups.values()]
        for m in self.modalities:
            if m != "tabular":
                groups[m] = []
                terms = [row.get(m, 0.0) for row in contributions]
                columns.append(np.array([-t[0] if isinstance(t, list) else t for t in terms], dtype=float))
        return _factors(groups, np.column_stack(columns), inputs.tabular, top_k)

    def scored(self, inputs: ModelInputs, top_k: int = 3) -> Scored:
        """Every risk-row output from one preprocessing pass."""
        features, present = self._features(inputs)
        contributions = self.fusion_.contributions(features, present)
        return Scored(self._probability(features, present), self._explain(inputs, features, contributions, top_k),
                      ["+".join(s) for s in self.fusion_.modalities_used(present)], contributions,
                      self.fusion_.predict(features, present) if self.task != "binary" else None)


def make_candidate(kind: str, inputs: tuple[str, ...], params: dict, seed: int, preprocessing: dict | None = None,
                   poolings: dict[str, str] | None = None, task: str = "binary", horizon_days: float | None = None):
    """A candidate model; ``params`` is the spec's flat mapping, whose keys that are the model's own
    constructor arguments (xgboost: resample, balance, calibration_folds, early_stopping_rounds;
    random_forest / mlp: resample, calibration_folds) become those arguments, the rest its ``params``.
    ``poolings`` (modality -> the spec's pooling) tells early fusion which record sequences it pools
    with attention and which with a BiLSTM."""
    if kind == "xgboost":
        library, own = _split_params(params, _XGBOOST_OPTIONS)
        return XGBoostRisk(params=library, preprocessing=preprocessing, seed=seed, **own)
    if kind == "logistic":
        return LogisticRisk(preprocessing=preprocessing, seed=seed, **params)
    if kind == "early_fusion":
        sequences = {m: p for m, p in (poolings or {}).items() if p in ("attention", "bilstm") and m in inputs}
        return EarlyFusionClassifier(modalities=inputs, preprocessing=preprocessing, seed=seed,
                                     sequence_pooling=sequences or None, **params)
    if kind in ("random_forest", "mlp"):
        library, own = _split_params(params, _CONCATENATION_OPTIONS)
        return ConcatenationRisk(kind=kind, task=task, modalities=inputs, preprocessing=preprocessing, seed=seed,
                                 params=library, **own)
    if kind == "late_fusion":
        return LateFusionRisk(task=task, modalities=inputs, preprocessing=preprocessing, seed=seed,
                              horizon_days=horizon_days, **params)
    raise ValueError(f"unknown candidate kind {kind!r}")
