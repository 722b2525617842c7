"""Training a model spec: labelled examples from the nightly stages' functions
(:mod:`pipeline.modeling.training_set`), a patient-level split, the ECG / image encoders
pre-trained on the training split, every modality embedded by the night's own
:func:`~pipeline.stages.embed.embed_modality`, every candidate grid-searched, fitted and
compared on the held-out patients, all versions registered with the data snapshot and code
version, the best marked selected and, when asked, promoted; the report is its own step
(:mod:`pipeline.modeling.training_report`).

Nothing from the held-out patients reaches a fitted statistic: the tabular preprocessing,
embedding scalers, encoders and calibration are all fitted inside the training split.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from pipeline.config import Settings, resolve_device
from pipeline.embed.isolation import Budget
from pipeline.embed.modalities import decode_files, hash_records, new_signal_encoder
from pipeline.embed.radiomics import RadiomicsExtractor
from pipeline.embed.rendered import rendered_embedding
from pipeline.embed.text import TextEncoder
from pipeline.filestore import FileStore
from pipeline.modeling import encoder_training, registry
from pipeline.modeling.ablation import ablation
from pipeline.modeling.estimators import make_candidate
from pipeline.modeling.inputs import ModelInputs, build_inputs, event_sequences, presence
from pipeline.modeling.metrics import task_metrics
from pipeline.modeling.spec import Candidate, ModelSpec
from pipeline.modeling.training_report import factor_importance, training_report, write_training_report
from pipeline.modeling.training_set import TrainingSet, targets, training_set
from pipeline.modeling.tuning import grid_search
from pipeline.monitoring import reference_quantiles
from pipeline.stages.embed import embed_modality
from pipeline.store.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass
class Split:
    """The patient-level split: targets, patients, and the rows on each side."""

    y: np.ndarray
    groups: np.ndarray
    train_rows: np.ndarray
    test_rows: np.ndarray


@dataclass
class Embedded:
    """Every embedded modality of the examples, and how the encoders behind them were made."""

    stay_embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    text_encoders: dict = field(default_factory=dict)    # text modality -> its encoder's description
    signal_encoders: dict = field(default_factory=dict)
    pretraining: dict = field(default_factory=dict)
    failures: list[pd.DataFrame] = field(default_factory=list)


@dataclass
class Fitted:
    """One candidate fitted on the training split and measured on the held-out one."""

    candidate: Candidate
    model: object
    metrics: dict
    held_out_scores: tuple      # (labels, probability) the report plots
    held_out: np.ndarray        # the probabilities whose quantiles drift monitoring compares against
    searched: list
    ablation: dict
    trees: int | dict | None
    importance: dict | None     # mean |SHAP| per factor on the held-out rows (boosted-tree models)


def split_patients(spec: ModelSpec, data: TrainingSet) -> Split:
    y = targets(spec, data.examples)
    groups = data.examples["subject_id"].to_numpy()
    train_rows, test_rows = next(GroupShuffleSplit(1, test_size=spec.test_fraction, random_state=spec.seed)
                                 .split(y, y, groups))
    log.info("%s: %d examples (%d train / %d held out), label counts %s", spec.name, len(y), len(train_rows),
             len(test_rows), data.examples["label"].value_counts().sort_index().to_dict())
    return Split(y, groups, train_rows, test_rows)


def embed_examples(wh: Warehouse, settings: Settings, spec: ModelSpec, data: TrainingSet, split: Split, *,
                   progress: bool) -> Embedded:
    """Each modality's input for every example at its prediction time, by the night's own path:
    events windowed into sequences; notes through the configured text encoder; ECGs and images
    through an encoder first pre-trained on the training split (or loaded from its weights)."""
    device = resolve_device(settings.device)
    store = FileStore.from_settings(settings)
    budget = Budget.from_settings(settings)
    out = Embedded()
    for modality in (m for m in spec.used_modalities() if m != "tabular"):
        options, source, records = spec.modalities[modality], spec.source(modality), data.records.get(modality)
        if source == "events":  # windows of the lab/vital codes: no encoder, a sequence model reads them
            out.stay_embeddings[modality] = event_sequences(spec, records, data.examples)
            continue
        if source in ("notes", "rendered"):
            encoder = TextEncoder(options.get("text_encoder") or settings.text_encoder,
                                  max_tokens=settings.text_max_tokens,
                                  batch_size=settings.embed_batch_size, device=device,
                                  pooling=options.get("text_pooling", "mean"),
                                  overlap=settings.text_window_overlap, max_windows=settings.text_max_windows)
            out.text_encoders[modality] = encoder.describe()
        if source == "rendered":  # the example's own fields as text, one vector per example
            vectors, mask, failed = rendered_embedding(wh, data.features, options["template"], encoder, store,
                                                       progress=progress)
            out.stay_embeddings[modality] = (vectors, mask)
            out.failures.append(failed)
            continue
        log.info("%s: embedding %d %s records", spec.name, len(records), modality)
        hashed, unreadable = hash_records(records, source, store)
        out.failures.append(unreadable)
        if options.get("extractor") == "radiomics":   # measured, not learned: nothing to pre-train
            encoder = RadiomicsExtractor(options)
            out.signal_encoders[modality] = encoder
        elif source != "notes":
            encoder = new_signal_encoder(source, {**options, "seed": spec.seed})
            out.pretraining[modality] = _pretrain(encoder, options, hashed, data.examples, split.train_rows, spec,
                                                  store, settings, budget, device, progress)
            out.signal_encoders[modality] = encoder
        embedded = embed_modality(wh, source, hashed, encoder, data.examples, options, store, settings,
                                  device=device, budget=budget, progress=progress)
        out.failures.append(embedded.failures)
        vectors = embedded.vectors
        if isinstance(encoder, RadiomicsExtractor) and options.get("select_top_k"):
            train = np.zeros(len(vectors), bool)
            train[split.train_rows] = True
            encoder.fit_selection(vectors, train & presence(embedded.mask), split.y, spec.task,
                                  int(options["select_top_k"]), seed=spec.seed)
            vectors = encoder.select(vectors)
            out.pretraining[modality] = {"radiomics_selected": encoder.selected_names}
        out.stay_embeddings[modality] = (vectors, embedded.mask)
    return out


def _pretrain(encoder, options: dict, hashed: pd.DataFrame, examples: pd.DataFrame, train_rows: np.ndarray,
              spec: ModelSpec, store: FileStore, settings: Settings, budget: Budget, device: str,
              progress: bool) -> dict:
    """Pre-train an ECG / image encoder on the training split's records available at each
    example's prediction time (configured ``weights`` are used as they are)."""
    usable = _record_labels(hashed, examples, train_rows)
    if options.get("weights"):
        return {"weights": str(options["weights"]), "records": int(len(usable))}
    if getattr(encoder.network, "shared_space", False):  # a CLIP checkpoint's own space: nothing to train
        return {"shared_space": str(options["backbone"]), "records": int(len(usable))}
    arrays, _ = decode_files(usable, encoder, store, workers=settings.decode_workers, budget=budget,
                             progress=progress)
    usable = usable[usable["content_hash"].isin(arrays)]
    return encoder_training.pretrain(encoder.network, np.stack([arrays[h] for h in usable["content_hash"]]),
                                     usable["label"].to_numpy(), usable["subject_id"].to_numpy(),
                                     epochs=int(options.get("epochs", 20)), seed=spec.seed, device=device)


def _record_labels(records: pd.DataFrame, examples: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """Records of the given examples' stays available at their prediction time, with labels."""
    chosen = examples.iloc[rows][["stay_id", "subject_id", "prediction_time", "label"]]
    chosen = chosen.assign(label=(chosen["label"] != 0).astype(int))  # encoders learn "any adverse outcome"
    joined = records.astype({"stay_id": "int64"}).merge(chosen, on="stay_id", suffixes=("", "_stay"))
    return joined[joined["time"] <= joined["prediction_time"]]


def fit_candidate(spec: ModelSpec, candidate: Candidate, inputs: ModelInputs, split: Split) -> Fitted:
    """Grid-search on the training split's patient folds, fit, and measure on the held-out patients."""
    log.info("%s: fitting %s (%s)", spec.name, candidate.name, candidate.kind)
    train_in = _only(inputs.take(split.train_rows), candidate.inputs)
    y_train, y_test = split.y[split.train_rows], split.y[split.test_rows]
    params, searched = grid_search(spec, candidate, train_in, y_train, split.groups[split.train_rows], spec.cv_folds)
    model = make_candidate(candidate.kind, candidate.inputs, params, spec.seed, spec.preprocessing,
                           spec.poolings(), task=spec.task, horizon_days=spec.horizon_days)
    model.fit(train_in, y_train, split.groups[split.train_rows])
    held_in = _only(inputs.take(split.test_rows), candidate.inputs)
    metrics, scores = task_metrics(spec, model, held_in, y_test)
    held_out = model.predict_risk(held_in) if spec.task == "survival" else scores[1]
    return Fitted(candidate, model, metrics, scores, held_out, searched,
                  ablation(spec, candidate.kind, model, held_in, y_test), _trees(model),
                  factor_importance(spec, model, held_in))


def train_spec(wh: Warehouse, settings: Settings, spec: ModelSpec, as_of: datetime, *, progress: bool = True,
               promote: bool = False) -> dict:
    """Fit, evaluate and register every candidate; mark the best ``selected`` and, with
    ``promote``, make it the version the nightly run scores (else ``vigil promote`` does)."""
    data = training_set(wh, settings, spec, as_of)
    split = split_patients(spec, data)
    embedded = embed_examples(wh, settings, spec, data, split, progress=progress)
    inputs = build_inputs(spec, data.features, embedded.stay_embeddings)
    trained_at = datetime.now(timezone.utc).replace(tzinfo=None)
    stamp = trained_at.strftime("%Y%m%dT%H%M%S")
    fitted = {c.name: fit_candidate(spec, c, inputs, split) for c in spec.candidates}
    promotable = [c.name for c in spec.candidates if not c.baseline]
    best = max(promotable, key=lambda name: fitted[name].metrics.get(spec.promote_metric) or -1)
    failures = pd.concat(embedded.failures, ignore_index=True) if embedded.failures else pd.DataFrame(columns=["reason"])
    report = training_report(spec, as_of, data, split.train_rows, split.test_rows,
                             {n: f.metrics for n, f in fitted.items()}, best, embedded.pretraining,
                             embedded.stay_embeddings, failures)
    report["grid_search"] = {n: f.searched for n, f in fitted.items() if f.searched}
    report["ablation"] = {n: f.ablation for n, f in fitted.items() if f.ablation}
    report["trees"] = {n: f.trees for n, f in fitted.items() if f.trees}
    report["factor_importance"] = {n: f.importance for n, f in fitted.items() if f.importance}
    report_path = write_training_report(report, spec, data.examples, split.test_rows,
                                        {n: f.held_out_scores for n, f in fitted.items()},
                                        {n: f.ablation for n, f in fitted.items()},
                                        settings.reports_dir / spec.name, stamp)
    training = {"as_of": str(as_of), "feature_reference": reference_quantiles(inputs.take(split.train_rows).tabular),
                "examples": len(split.y), "pretraining": embedded.pretraining,
                "subjects": sorted({int(s) for s in split.groups})}
    code = registry.code_version()
    rows = [_save_version(settings, spec, f, embedded, training, stamp, code, report_path)
            | {"training_as_of": as_of, "trained_at": trained_at, "n_train": len(split.train_rows),
               "n_test": len(split.test_rows), "data_snapshot": json.dumps(data.snapshot, sort_keys=True)}
            for f in fitted.values()]
    registry.register(wh, rows, f"{stamp}-{best}", promote=promote)
    report["promoted_version"] = f"{stamp}-{best}" if promote else None
    return report


def _save_version(settings: Settings, spec: ModelSpec, fitted: Fitted, embedded: Embedded, training: dict,
                  stamp: str, code: str, report_path: Path) -> dict:
    """Save a fitted candidate's bundle (with what it was trained on); the start of its registry row."""
    candidate, version = fitted.candidate, f"{stamp}-{fitted.candidate.name}"
    artifact = settings.artifacts_dir / spec.name / stamp / candidate.name
    quantiles = np.quantile(fitted.held_out, np.linspace(0, 1, 21)).tolist()
    registry.Bundle(
        model_name=spec.name, version=version, candidate=candidate.name, inputs=candidate.inputs,
        spec_raw=spec.raw, model=fitted.model,
        text_encoder=next((embedded.text_encoders[m] for m in candidate.inputs if m in embedded.text_encoders),
                          None),
        text_encoders={m: d for m, d in embedded.text_encoders.items() if m in candidate.inputs},
        signal_encoders={m: e for m, e in embedded.signal_encoders.items() if m in candidate.inputs},
        training={**training, "held_out_probabilities": quantiles},
    ).save(artifact)
    return {"model_name": spec.name, "version": version, "candidate": candidate.name, "task": spec.task,
            "spec_sha256": spec.sha256, "metrics_json": json.dumps(fitted.metrics, sort_keys=True),
            "artifact_uri": settings.stored_path(artifact), "code_version": code,
            "report_uri": settings.stored_path(report_path)}


def _trees(model) -> int | dict[str, int] | None:
    """The boosted trees a fitted XGBoost candidate kept (per base model for late fusion): what
    early stopping chose where the spec asked for it."""
    if getattr(model, "n_trees_", None):
        return int(model.n_trees_)
    fusion = getattr(model, "fusion_", None)
    return {m: int(base.n_estimators) for m, base in fusion.base_.items()} if fusion is not None else None


def _only(inputs, modalities):
    """The inputs a candidate may see (an XGBoost candidate never sees embeddings)."""
    keep = [m for m in modalities if m != "tabular"]
    return ModelInputs(tabular=inputs.tabular, embeddings={m: inputs.embeddings[m] for m in keep},
                       masks={m: inputs.masks[m] for m in keep})



def as_of_for_run(logical_date: datetime | None, run_after: datetime) -> datetime:
    """A training run uses what was known at its logical date (or, without one, when it ran)."""
    moment = logical_date or run_after
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def train_named_spec(name: str, as_of: datetime, settings: Settings | None = None, promote: bool = False) -> dict:
    from pipeline.config import load_settings
    from pipeline.modeling.spec import load_spec
    from pipeline.store.warehouse import connect

    settings = settings or load_settings()
    return train_spec(connect(settings), settings, load_spec(settings.models_dir / f"{name}.yaml"), as_of,
                      progress=False, promote=promote)
