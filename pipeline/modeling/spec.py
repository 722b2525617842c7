"""Model specs: one YAML file per risk model in ``models/``, validated on load.

A spec says what is predicted (task, label query, prediction time), from what (feature codes,
windows, modalities), with which candidate models, and how scores become risk bands. Errors
name the file and the field.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.features.preprocess import IMPUTATIONS, SCALINGS
from pipeline.modeling.imbalance import resampling_steps
from pipeline.features.windows import AGGREGATIONS, DEFAULT_AGGREGATIONS, WindowSpec
from pipeline.modality import Modality

MODALITIES = ("tabular", *(m.value for m in Modality))
CANDIDATE_KINDS = ("xgboost", "logistic", "early_fusion", "late_fusion", "random_forest", "mlp")
POOLINGS = ("mean", "last", "attention", "bilstm")  # attention / bilstm: learned over the last max_records
TASKS = ("binary", "multiclass", "survival")
KINDS_FOR_TASK = {"binary": CANDIDATE_KINDS, "multiclass": ("late_fusion", "random_forest", "mlp"),
                  "survival": ("late_fusion",)}
PROMOTE_METRICS = {"binary": ("auroc", "auprc"), "multiclass": ("auroc", "accuracy", "macro_f1"),
                   "survival": ("c_index",)}


class SpecError(ValueError):
    pass


@dataclass(frozen=True)
class Candidate:
    name: str
    kind: str
    inputs: tuple[str, ...]
    params: dict
    baseline: bool = False   # trained and reported for comparison, never promoted
    grid: dict = field(default_factory=dict)   # parameter -> values, searched by patient-level k-fold CV


@dataclass(frozen=True)
class RiskBand:
    name: str
    below: float | None  # upper probability bound (exclusive); None for the top band


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    task: str
    label_query: str
    classes: tuple[str, ...]                # binary: (negative, positive); multiclass: class names by label index
    horizon_days: float | None              # survival: the risk row's probability is P(event within it)
    cohort_query: str | None                # stays enrolled in the model's cohort (None: every stay)
    min_age: float
    prediction_offset_hours: float | None   # one example per stay at admission + offset ...
    prediction_schedule: str                # ... ("offset"), or one at every midnight of the stay ("nightly")
    label_kind: str                         # "outcome": the query's label; "event_within": event in (t, t + horizon]
    horizon_hours: float | None
    window_spec: WindowSpec
    sequence: dict | None
    preprocessing: dict
    static_numeric: tuple[str, ...]
    static_categorical: tuple[str, ...]
    modalities: dict[str, dict]
    candidates: tuple[Candidate, ...]
    test_fraction: float
    cv_folds: int                           # patient-level folds of a candidate's grid search
    seed: int
    promote_metric: str
    risk_bands: tuple[RiskBand, ...]
    operating_threshold: float
    top_k_factors: int
    path: Path | None = None
    raw: dict = field(default_factory=dict, compare=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(yaml.safe_dump(self.raw, sort_keys=True).encode()).hexdigest()

    def band(self, probability: float) -> str:
        for band in self.risk_bands:
            if band.below is None or probability < band.below:
                return band.name
        return self.risk_bands[-1].name

    def poolings(self) -> dict[str, str]:
        """Each embedded modality's pooling (``mean``, ``last``, ``attention``, ``bilstm``)."""
        return {m: options.get("pooling", "mean") for m, options in self.modalities.items()}

    def source(self, modality: str) -> str:
        """The record table a modality reads (``images`` for a CT or pathology modality), or
        ``events`` (window sequences of the codes) / ``rendered`` (its template's fields as text)."""
        return "tabular" if modality == "tabular" else self.modalities[modality].get("source", modality)

    def modality_records(self, modality: str, records):
        """A record table's rows that belong to a modality (its ``categories``: note types or
        DICOM modalities; every row without)."""
        categories = self.modalities[modality].get("categories")
        return records if not categories else records[records["category"].isin(categories)]

    def used_modalities(self) -> tuple[str, ...]:
        used = {m for c in self.candidates for m in c.inputs}
        return tuple(m for m in ("tabular", *self.modalities) if m in used)


def _check_extractor(options: dict, source: str, where: str) -> None:
    """``extractor: radiomics`` (an images modality: PyRadiomics features of each image's tumour
    mask instead of a network's embedding), its ``radiomics`` settings and ``select_top_k``."""
    extractor = options.get("extractor")
    if extractor is None:
        if "select_top_k" in options or "radiomics" in options:
            raise SpecError(f"{where}: select_top_k and radiomics settings belong to an 'extractor: radiomics' modality")
        return
    if extractor != "radiomics" or source != "images":
        raise SpecError(f"{where}.extractor: 'radiomics' is the one extractor, for an images modality")
    if options.get("backbone") or options.get("weights"):
        raise SpecError(f"{where}: a radiomics modality has no network to load (no backbone or weights)")
    top_k = options.get("select_top_k")
    if top_k is not None and not (isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0):
        raise SpecError(f"{where}.select_top_k: a positive number of features, chosen on the training split")
    if options.get("pooling", "mean") not in ("mean", "last"):
        raise SpecError(f"{where}.pooling: a radiomics modality pools its images' features by mean or last")
    if not isinstance(options.get("radiomics", {}), dict):
        raise SpecError(f"{where}.radiomics: PyRadiomics settings as a mapping (e.g. {{binWidth: 25}})")


def _require(mapping: dict, key: str, where: str):
    if not isinstance(mapping, dict) or key not in mapping:
        raise SpecError(f"{where}: missing required field '{key}'")
    return mapping[key]


def parse_spec(raw: dict, where: str = "<spec>") -> ModelSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: a model spec is a mapping, got {type(raw).__name__}")
    task = _require(raw, "task", where)
    if task not in TASKS:
        raise SpecError(f"{where}: task '{task}' is not supported yet; choose from {list(TASKS)}")
    label = _require(raw, "label", where)
    cohort = _require(raw, "cohort", where)
    label_kind = label.get("kind", "outcome") if isinstance(label, dict) else None
    if label_kind not in ("outcome", "event_within"):
        raise SpecError(f"{where}: label.kind must be 'outcome' or 'event_within', not {label_kind!r}")
    horizon = label.get("horizon_hours")
    if label_kind == "event_within" and not (isinstance(horizon, (int, float)) and horizon > 0):
        raise SpecError(f"{where}: label.horizon_hours: an event_within label needs a positive number of hours")
    classes = label.get("classes", ["negative", "positive"]) if task != "survival" else ["censored", "event"]
    if task == "multiclass" and not (isinstance(classes, list) and len(classes) >= 3
                                     and len(set(map(str, classes))) == len(classes)):
        raise SpecError(f"{where}: label.classes: a multiclass task names its 3 or more classes, in label order")
    horizon_days = label.get("horizon_days")
    if task == "survival" and not (isinstance(horizon_days, (int, float)) and horizon_days > 0):
        raise SpecError(f"{where}: label.horizon_days: a survival task needs a positive horizon (days)")
    if task != "binary" and label_kind != "outcome":
        raise SpecError(f"{where}: label.kind: '{label_kind}' labels are binary; a {task} task reads the query's outcome")
    schedule = cohort.get("prediction_times", "offset") if isinstance(cohort, dict) else None
    if schedule not in ("offset", "nightly"):
        raise SpecError(f"{where}: cohort.prediction_times must be 'offset' or 'nightly', not {schedule!r}")
    offset = _require(cohort, "prediction_offset_hours", f"{where}: cohort") if schedule == "offset" else None
    features = _require(raw, "features", where)
    aggregations = tuple(features.get("aggregations", DEFAULT_AGGREGATIONS))
    bad = [a for a in aggregations if a not in AGGREGATIONS]
    if bad:
        raise SpecError(f"{where}: features.aggregations: unknown {bad}; choose from {list(AGGREGATIONS)}")
    lookbacks = []
    for hours in _require(features, "lookback_hours", f"{where}: features"):
        if hours == "stay":
            lookbacks.append(None)
        elif isinstance(hours, int) and hours > 0:
            lookbacks.append(hours)
        else:
            raise SpecError(f"{where}: features.lookback_hours: {hours!r} is neither a positive number of hours nor 'stay'")
    sequence = features.get("sequence")
    if sequence is not None and not (isinstance(sequence, dict) and int(sequence.get("windows", 0)) > 0):
        raise SpecError(f"{where}: features.sequence needs a positive 'windows' count")
    preprocessing = dict(raw.get("preprocessing") or {})
    if preprocessing.get("scaling", "zscore") not in SCALINGS:
        raise SpecError(f"{where}: preprocessing.scaling must be one of {list(SCALINGS)}")
    if preprocessing.get("imputation", "mean") not in IMPUTATIONS:
        raise SpecError(f"{where}: preprocessing.imputation must be one of {list(IMPUTATIONS)}")
    unknown_options = set(preprocessing) - {"max_missing", "max_stay_missing", "clip_sd", "scaling", "select_top_k",
                                            "mi_weight", "redundancy", "imputation"}
    if unknown_options:
        raise SpecError(f"{where}: preprocessing: unknown option(s) {sorted(unknown_options)}")
    window_spec = WindowSpec(codes=tuple(_require(features, "codes", f"{where}: features")),
                             lookbacks=tuple(lookbacks), aggregations=aggregations,
                             missing_indicators=bool(features.get("missing_indicators", True)))
    modalities = raw.get("modalities") or {}
    for name, options in modalities.items():
        source = (options or {}).get("source", name)
        if name == "tabular" or source not in (*MODALITIES[1:], "events", "rendered"):
            raise SpecError(f"{where}: modalities.{name}: unknown modality; name one of {list(MODALITIES[1:])}, "
                            f"or give it a 'source' among them (e.g. ct: {{source: images, categories: [CT]}}), "
                            f"'events' (the features.sequence windows of the lab/vital codes) or 'rendered' "
                            f"(the clinical fields of its template as text)")
        if (options or {}).get("text_encoder") and source not in ("notes", "rendered"):
            raise SpecError(f"{where}: modalities.{name}.text_encoder: only a notes or rendered modality reads text")
        if (options or {}).get("shared_space") and not (source == "images" and (options or {}).get("backbone")):
            raise SpecError(f"{where}: modalities.{name}.shared_space: an images modality's CLIP 'backbone' "
                            f"(its image projection) is what it shares")
        if source == "rendered" and (options or {}).get("pooling", "mean") != "mean":
            raise SpecError(f"{where}: modalities.{name}.pooling: a rendered modality is one text per row (mean)")
        if source == "rendered":
            _check_template((options or {}).get("template"), window_spec, raw.get("features") or {},
                            f"{where}: modalities.{name}.template")
        if source == "events" and (sequence is None or (options or {}).get("pooling") not in ("bilstm", "attention")):
            raise SpecError(f"{where}: modalities.{name}: an events modality reads features.sequence (required) "
                            f"through pooling: bilstm or attention")
        _check_extractor(options or {}, source, f"{where}: modalities.{name}")
        categories = (options or {}).get("categories")
        if categories is not None and not (isinstance(categories, list) and categories):
            raise SpecError(f"{where}: modalities.{name}.categories: a non-empty list (note types, DICOM modalities)")
        pooling = (options or {}).get("pooling", "mean")
        if pooling not in POOLINGS:
            raise SpecError(f"{where}: modalities.{name}.pooling: {pooling!r} is not one of {list(POOLINGS)}")
        if int((options or {}).get("max_records", 5)) < 1:
            raise SpecError(f"{where}: modalities.{name}.max_records must be at least 1")
    candidates = []
    for i, entry in enumerate(_require(raw, "candidates", where)):
        here = f"{where}: candidates[{i}]"
        kind = _require(entry, "kind", here)
        if kind not in CANDIDATE_KINDS:
            raise SpecError(f"{here}.kind: '{kind}' is not one of {list(CANDIDATE_KINDS)}")
        if kind not in KINDS_FOR_TASK[task]:
            raise SpecError(f"{here}.kind: a {kind} candidate cannot fit a {task} task; use {list(KINDS_FOR_TASK[task])}")
        inputs = tuple(_require(entry, "inputs", here))
        for m in inputs:
            if m != "tabular" and m not in modalities:
                raise SpecError(f"{here}.inputs: unknown modality '{m}'; use tabular or one configured under "
                                f"modalities ({list(modalities)})")
        if kind in ("xgboost", "logistic") and inputs != ("tabular",):
            raise SpecError(f"{here}: an {kind} candidate reads the tabular input only")
        if kind in ("xgboost", "random_forest", "mlp"):
            _check_resample((entry.get("params") or {}).get("resample", "none"), f"{here}.params")
        grid = entry.get("grid")
        if grid is not None and not (isinstance(grid, dict) and grid
                                     and all(isinstance(v, list) and v for v in grid.values())):
            raise SpecError(f"{here}.grid: a mapping of parameter name -> non-empty list of values")
        if kind == "late_fusion":
            _check_late_fusion(entry.get("params") or {}, inputs, here)
        candidates.append(Candidate(name=_require(entry, "name", here), kind=kind, inputs=inputs,
                                    params=dict(entry.get("params") or {}), baseline=bool(entry.get("baseline", False)),
                                    grid={k: list(v) for k, v in (grid or {}).items()}))
    if all(c.baseline for c in candidates):
        raise SpecError(f"{where}: candidates: at least one candidate must not be a baseline (only those are promoted)")
    if len({c.name for c in candidates}) != len(candidates):
        raise SpecError(f"{where}: candidate names must be unique")
    bands = []
    for i, entry in enumerate(_require(raw, "risk_bands", where)):
        below = entry.get("below")
        bands.append(RiskBand(name=_require(entry, "name", f"{where}: risk_bands[{i}]"),
                              below=None if below is None else float(below)))
    bounds = [b.below for b in bands[:-1]]
    if None in bounds or bands[-1].below is not None or bounds != sorted(bounds):
        raise SpecError(f"{where}: risk_bands must rise, and only the last band may omit 'below'")
    training = raw.get("training") or {}
    promote_metric = training.get("promote_metric", PROMOTE_METRICS[task][0])
    if promote_metric not in PROMOTE_METRICS[task]:
        raise SpecError(f"{where}: training.promote_metric: {promote_metric!r} is not one of "
                        f"{list(PROMOTE_METRICS[task])} for a {task} task")
    if int(training.get("cv_folds", 5)) < 2:
        raise SpecError(f"{where}: training.cv_folds: a grid search needs at least 2 folds")
    threshold = float(_require(raw, "operating_threshold", where))
    if not 0 < threshold < 1:
        raise SpecError(f"{where}: operating_threshold must be between 0 and 1")
    return ModelSpec(
        name=_require(raw, "name", where),
        title=raw.get("title", raw["name"]),
        task=task,
        label_query=_require(label, "query", f"{where}: label"),
        classes=tuple(str(c) for c in classes),
        horizon_days=None if horizon_days is None else float(horizon_days),
        cohort_query=cohort.get("query"),
        min_age=float(cohort.get("min_age", 0)),
        prediction_offset_hours=None if offset is None else float(offset),
        prediction_schedule=schedule,
        label_kind=label_kind,
        horizon_hours=None if horizon is None else float(horizon),
        window_spec=window_spec,
        sequence=dict(sequence) if sequence else None,
        preprocessing=preprocessing,
        static_numeric=tuple(features.get("static_numeric", ())),
        static_categorical=tuple(features.get("static_categorical", ())),
        modalities={k: dict(v or {}) for k, v in modalities.items()},
        candidates=tuple(candidates),
        test_fraction=float(training.get("test_fraction", 0.2)),
        cv_folds=int(training.get("cv_folds", 5)),
        seed=int(training.get("seed", 7)),
        promote_metric=promote_metric,
        risk_bands=tuple(bands),
        operating_threshold=threshold,
        top_k_factors=int((raw.get("explanations") or {}).get("top_k", 3)),
        raw=raw,
    )


def _check_late_fusion(params: dict, inputs: tuple[str, ...], where: str) -> None:
    unknown = set(params) - {"folds", "base", "resample", "early_stopping_rounds"}
    if unknown:
        raise SpecError(f"{where}.params: unknown late-fusion option(s) {sorted(unknown)}; use folds, base, resample, "
                        "early_stopping_rounds")
    if not isinstance(params.get("early_stopping_rounds", 0), int) or params.get("early_stopping_rounds", 0) < 0:
        raise SpecError(f"{where}.params.early_stopping_rounds: a whole number of rounds >= 0 (0: no early stopping)")
    if int(params.get("folds", 5)) < 2:
        raise SpecError(f"{where}.params.folds: out-of-fold stacking needs at least 2 folds")
    for modality in params.get("base") or {}:
        if modality not in inputs:
            raise SpecError(f"{where}.params.base.{modality}: not one of the candidate's inputs {list(inputs)}")
    _check_resample(params.get("resample", "none"), f"{where}.params")


def template_fields(template: str) -> list[str]:
    """The feature columns a template reads.

    >>> template_fields("Age {age:.0f}, {sex}, lactate {lab_lactate__last_24h:.1f} mmol/L")
    ['age', 'sex', 'lab_lactate__last_24h']
    """
    return list(dict.fromkeys(field for _, field, _, _ in string.Formatter().parse(template) if field is not None))


def _check_template(template, windows: WindowSpec, features: dict, where: str) -> None:
    """A rendered-text modality's template: ``str.format`` fields naming the spec's features,
    each formatted as its kind of value allows (checked by rendering a probe row)."""
    if not isinstance(template, str) or not template.strip():
        raise SpecError(f"{where}: required, the text each row renders (e.g. 'Age {{age:.0f}}, {{sex}}')")
    try:
        fields = template_fields(template)
    except ValueError as error:
        raise SpecError(f"{where}: {error}") from None
    categorical = set(features.get("static_categorical") or [])
    known = {*windows.columns(), *(features.get("static_numeric") or []), *categorical}
    unknown = [f for f in fields if f not in known]
    if not fields or unknown:
        raise SpecError(f"{where}: fields must name the spec's features; unknown: {unknown or 'none named'}")
    try:
        template.format(**{f: "x" if f in categorical else 1.0 for f in fields})
    except (ValueError, IndexError, KeyError, AttributeError) as error:
        raise SpecError(f"{where}: cannot render ({type(error).__name__}: {error}); a category takes no number "
                        f"format, a number a numeric one (e.g. {{age:.0f}})") from None


def _check_resample(resample, where: str) -> None:
    try:
        resampling_steps(resample)
    except ValueError as error:
        raise SpecError(f"{where}.resample: {resample!r}: {error}") from None


def load_spec(path: Path) -> ModelSpec:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {error}") from error
    spec = parse_spec(raw, str(path))
    if spec.name != Path(path).stem:
        raise SpecError(f"{path}: name '{spec.name}' must match the file name '{Path(path).stem}'")
    return ModelSpec(**{**spec.__dict__, "path": Path(path)})


def load_specs(models_dir: Path) -> list[ModelSpec]:
    paths = sorted(Path(models_dir).glob("*.yaml"))
    if not paths:
        raise SpecError(f"no model specs (*.yaml) in {models_dir}")
    return [load_spec(p) for p in paths]
