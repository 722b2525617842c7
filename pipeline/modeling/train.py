"""Training a model spec: build labelled examples with the nightly stage functions, split by
patient, pre-train the ECG / image encoders on the training split, grid-search and fit every
candidate, compare them on the held-out patients, register all versions with the data snapshot
and code version, mark the best selected and, when asked, promote it.

Nothing from the held-out patients reaches a fitted statistic: the tabular preprocessing,
embedding scalers, encoders and calibration are all fitted inside the training split.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from pipeline.config import Settings, resolve_device
from pipeline.store import embeddings as cache
from pipeline.embed.isolation import Budget
from pipeline.embed.modalities import (MODALITY_TABLE, decode_files, embed_records, encode_guarded, failure_rows,
                                       hash_records, new_signal_encoder, stay_embedding)
from pipeline.embed.text import TextEncoder
from pipeline.features.windows import KEY, build_features
from pipeline.filestore import FileStore
from pipeline.modeling import encoder_training, registry
from pipeline.modeling.estimators import make_candidate
from pipeline.modeling.inputs import ModelInputs, build_inputs, event_sequences, presence
from pipeline.modeling.metrics import primary_metric, task_metrics
from pipeline.modeling.tuning import grid_search
from pipeline.modeling.report_html import write_report_html
from pipeline.modeling.spec import ModelSpec
from pipeline.monitoring import reference_quantiles
from pipeline.sources.mimic import extract, read_enrolment, read_labels
from pipeline.validate.checks import enforce_thresholds, validate
from pipeline.store.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass
class TrainingSet:
    examples: pd.DataFrame        # stay_id, subject_id, prediction_time, label
    features: pd.DataFrame
    records: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    snapshot: dict               # rows read per source table and the latest arrival: what the version saw


def training_set(wh: Warehouse, settings: Settings, spec: ModelSpec, as_of: datetime) -> TrainingSet:
    """Labelled examples (see :func:`labelled_examples`) and their features, from data known by ``as_of``."""
    extraction = extract(wh, until=as_of)
    validation = validate(extraction.frames, as_of, extraction.quarantined)
    enforce_thresholds(validation, settings.failure_rate_limit, settings.failure_rate_min_rows)
    cohort = validation.valid("cohort")
    examples = labelled_examples(cohort, wh, spec, as_of)
    if examples["label"].nunique() < 2:
        raise ValueError(f"{spec.name}: the training examples known by {as_of} hold only one label class "
                         f"({len(examples)} examples); load more data or move the training date later")
    if spec.task == "multiclass" and not examples["label"].between(0, len(spec.classes) - 1).all():
        bad = sorted(set(examples["label"]) - set(range(len(spec.classes))))
        raise ValueError(f"{spec.name}: label query {spec.label_query} returned label(s) {bad}, outside the "
                         f"{len(spec.classes)} classes of label.classes")
    features = build_features(validation.valid("events"), cohort, examples[KEY], spec.window_spec)
    records = {}
    for m in spec.used_modalities():
        if m != "tabular":  # the records of the examples' stays only (other cohorts' records are not this model's)
            source = spec.source(m)
            table = validation.valid("events") if source == "events" else \
                spec.modality_records(m, validation.valid(MODALITY_TABLE[source]))
            records[m] = table[table["stay_id"].isin(examples["stay_id"])]
    columns = ["stay_id", "subject_id", "prediction_time", "label"] + (["days"] if spec.task == "survival" else [])
    latest = [frame["arrival_time"].max() for frame in extraction.frames.values()
              if "arrival_time" in frame and len(frame)]
    snapshot = {"as_of": str(as_of), "rows": {t: int(len(f)) for t, f in extraction.frames.items()},
                "latest_arrival": str(max(latest)) if latest else None,
                "examples": int(len(examples)), "patients": int(examples["subject_id"].nunique())}
    return TrainingSet(examples=examples[columns], features=features, records=records,
                       quarantine=validation.quarantine(), snapshot=snapshot)


def targets(spec: ModelSpec, examples: pd.DataFrame) -> np.ndarray:
    """What the candidates fit: the class index, or for survival ``(rows, 2)`` of (days, event)."""
    if spec.task == "survival":
        return np.column_stack([examples["days"].to_numpy(float), examples["label"].to_numpy(float)])
    return examples["label"].to_numpy().astype(int)


def labelled_examples(cohort: pd.DataFrame, wh: Warehouse, spec: ModelSpec, as_of: datetime) -> pd.DataFrame:
    """The spec's training examples: (stay, prediction time, label) for adult stays whose outcome
    was known by ``as_of`` and that were still in the ICU, outcome unknown, at prediction time.

    ``offset``: one example per stay at admission + offset. ``nightly``: one at every midnight
    of the stay (as the nightly run scores), up to the event; an ``event_within`` label is 1 when
    the event follows within the horizon.
    """
    contract = ("survival_labels" if spec.task == "survival"
                else "event_labels" if spec.label_kind == "event_within" else "labels")
    labels = read_labels(wh, spec.label_query, as_of, contract).drop(columns=["subject_id"])
    examples = cohort.merge(labels, on="stay_id")
    enrolled = read_enrolment(wh, spec.cohort_query, as_of)
    if enrolled is not None:
        examples = examples.merge(enrolled, on="stay_id")
    examples = examples[(examples["age"] >= spec.min_age) & examples["discharge_time"].notna()]
    if spec.prediction_schedule == "offset":
        examples = examples.assign(prediction_time=examples["admit_time"] + pd.Timedelta(hours=spec.prediction_offset_hours))
    else:
        first = examples["admit_time"].dt.floor("D") + pd.Timedelta(days=1)
        nights = ((examples["discharge_time"] - first) // pd.Timedelta(days=1)).clip(lower=-1).astype(int) + 1
        examples = examples.loc[examples.index.repeat(nights)].copy()
        examples["prediction_time"] = (first.loc[examples.index]
                                       + pd.to_timedelta(examples.groupby(level=0).cumcount(), unit="D"))
    examples = examples[(examples["discharge_time"] > examples["prediction_time"])      # still in the ICU then
                        & (examples["label_known_time"] > examples["prediction_time"])]  # outcome not yet known
    if enrolled is not None:
        examples = examples[examples["enrolled_time"] <= examples["prediction_time"]]
    if spec.task == "survival":  # time from the prediction to the event or censoring, in days
        examples = examples.assign(label=examples["event"],
                                   days=(examples["event_time"] - examples["prediction_time"]) / pd.Timedelta(days=1))
        examples = examples[examples["days"] > 0]
    if spec.label_kind == "event_within":
        examples = examples[~(examples["event_time"] <= examples["prediction_time"])]   # not after the event
        horizon = examples["prediction_time"] + pd.Timedelta(hours=spec.horizon_hours)
        examples = examples.assign(label=(examples["event_time"] <= horizon).astype("int64"))
    return examples.sort_values(["stay_id", "prediction_time"]).reset_index(drop=True)


def _record_labels(records: pd.DataFrame, examples: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """Records of the given examples' stays available at their prediction time, with labels."""
    chosen = examples.iloc[rows][["stay_id", "subject_id", "prediction_time", "label"]]
    chosen = chosen.assign(label=(chosen["label"] != 0).astype(int))  # encoders learn "any adverse outcome"
    joined = records.astype({"stay_id": "int64"}).merge(chosen, on="stay_id", suffixes=("", "_stay"))
    return joined[joined["time"] <= joined["prediction_time"]]


def train_spec(wh: Warehouse, settings: Settings, spec: ModelSpec, as_of: datetime, *, progress: bool = True,
               promote: bool = False) -> dict:
    """Fit, evaluate and register every candidate; mark the best ``selected`` and, with
    ``promote``, make it the version the nightly run scores (else ``vigil promote`` does)."""
    device = resolve_device(settings.device)
    store = FileStore.from_settings(settings)
    budget = Budget.from_settings(settings)
    data = training_set(wh, settings, spec, as_of)
    y = targets(spec, data.examples)
    groups = data.examples["subject_id"].to_numpy()
    train_rows, test_rows = next(GroupShuffleSplit(1, test_size=spec.test_fraction, random_state=spec.seed)
                                 .split(y, y, groups))
    log.info("%s: %d examples (%d train / %d held out), label counts %s", spec.name, len(y), len(train_rows),
             len(test_rows), data.examples["label"].value_counts().sort_index().to_dict())

    stay_embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    text_info, signal_encoders, pretraining, failures = None, {}, {}, []
    for modality, records in data.records.items():
        options, source = spec.modalities[modality], spec.source(modality)
        if source == "events":  # windows of the lab/vital codes: no encoder, a sequence model reads them
            stay_embeddings[modality] = event_sequences(spec, records, data.examples)
            continue
        log.info("%s: embedding %d %s records", spec.name, len(records), modality)
        hashed, failed = hash_records(records, source, store)
        failures.append(failed)
        if source == "notes":
            encoder = TextEncoder(settings.text_encoder, max_tokens=settings.text_max_tokens,
                                  batch_size=settings.embed_batch_size, device=device,
                                  pooling=options.get("text_pooling", "mean"),
                                  overlap=settings.text_window_overlap, max_windows=settings.text_max_windows)
            vectors, failed, _ = embed_records(wh, source, hashed, encoder, store, device=device, budget=budget,
                                               progress=progress)
            text_info, dim = encoder.describe(), encoder.dim
        else:
            encoder = new_signal_encoder(source, {**options, "seed": spec.seed})
            arrays, bad = decode_files(hashed, encoder, store, workers=settings.decode_workers, budget=budget,
                                       progress=progress)
            unreadable = hashed[hashed["content_hash"].isin(bad)]
            failed = failure_rows(MODALITY_TABLE[source], unreadable,
                                  [bad[h] for h in unreadable["content_hash"]], "decode_file")
            usable = _record_labels(hashed[hashed["content_hash"].isin(arrays)], data.examples, train_rows)
            if options.get("weights"):  # pretrained weights configured: used as they are
                pretraining[modality] = {"weights": str(options["weights"]), "records": int(len(usable))}
            else:
                pretraining[modality] = encoder_training.pretrain(
                    encoder.network, np.stack([arrays[h] for h in usable["content_hash"]]),
                    usable["label"].to_numpy(), usable["subject_id"].to_numpy(),
                    epochs=int(options.get("epochs", 20)), seed=spec.seed, device=device)
            keys = list(arrays)
            vectors, not_encoded = encode_guarded(lambda batch: encoder.encode(batch, device), keys,
                                                  np.stack([arrays[k] for k in keys]) if keys else np.zeros(0),
                                                  f"{source} encoding")
            unencoded = hashed[hashed["content_hash"].isin(not_encoded)]
            failures.append(failure_rows(MODALITY_TABLE[source], unencoded,
                                         [not_encoded[h] for h in unencoded["content_hash"]], "encode"))
            cache.store(wh, encoder.encoder_id, source, vectors)
            signal_encoders[modality] = encoder
            dim = encoder.network.config["embedding_dim"]
        failures.append(failed)
        stay_embeddings[modality] = stay_embedding(hashed, vectors, data.examples, dim, options)

    inputs = build_inputs(spec, data.features, stay_embeddings)
    train_in, test_in = inputs.take(train_rows), inputs.take(test_rows)
    trained_at = datetime.now(timezone.utc).replace(tzinfo=None)
    stamp = trained_at.strftime("%Y%m%dT%H%M%S")
    results, rows, held_out_scores, ablation, searched, fitted_trees = {}, [], {}, {}, {}, {}
    code = registry.code_version()
    for candidate in spec.candidates:
        log.info("%s: fitting %s (%s)", spec.name, candidate.name, candidate.kind)
        params, searched[candidate.name] = grid_search(spec, candidate, _only(train_in, candidate.inputs),
                                                       y[train_rows], groups[train_rows], spec.cv_folds)
        model = make_candidate(candidate.kind, candidate.inputs, params, spec.seed, spec.preprocessing,
                               spec.poolings(), task=spec.task, horizon_days=spec.horizon_days)
        model.fit(_only(train_in, candidate.inputs), y[train_rows], groups[train_rows])
        held_in = _only(test_in, candidate.inputs)
        metrics, held_out_scores[candidate.name] = task_metrics(spec, model, held_in, y[test_rows])
        held_out = model.predict_proba(held_in) if spec.task == "survival" else held_out_scores[candidate.name][1]
        results[candidate.name] = metrics
        fitted_trees[candidate.name] = _trees(model)
        ablation[candidate.name] = (_single_modalities(spec, model, held_in, y[test_rows])
                                    if candidate.kind == "late_fusion"
                                    else _withheld_modalities(spec, model, held_in, y[test_rows]))
        version = f"{stamp}-{candidate.name}"
        artifact = settings.artifacts_dir / spec.name / stamp / candidate.name
        registry.Bundle(
            model_name=spec.name, version=version, candidate=candidate.name, inputs=candidate.inputs,
            spec_raw=spec.raw, model=model,
            text_encoder=text_info if "notes" in candidate.inputs else None,
            signal_encoders={m: e for m, e in signal_encoders.items() if m in candidate.inputs},
            training={"as_of": str(as_of), "held_out_probabilities": np.quantile(held_out, np.linspace(0, 1, 21)).tolist(),
                      "feature_reference": reference_quantiles(train_in.tabular),
                      "examples": len(y), "pretraining": pretraining,
                      "subjects": sorted({int(s) for s in groups})},
        ).save(artifact)
        rows.append({"model_name": spec.name, "version": version, "candidate": candidate.name, "task": spec.task,
                     "spec_sha256": spec.sha256, "training_as_of": as_of, "trained_at": trained_at,
                     "n_train": len(train_rows), "n_test": len(test_rows),
                     "metrics_json": json.dumps(metrics, sort_keys=True),
                     "artifact_uri": settings.stored_path(artifact),
                     "data_snapshot": json.dumps(data.snapshot, sort_keys=True), "code_version": code})
    promotable = [c.name for c in spec.candidates if not c.baseline]
    best = max(promotable, key=lambda name: results[name].get(spec.promote_metric) or -1)
    selected_version = f"{stamp}-{best}"
    report = _report(spec, as_of, data, train_rows, test_rows, results, best, pretraining, stay_embeddings,
                     pd.concat(failures, ignore_index=True) if failures else pd.DataFrame(columns=["reason"]))
    report["grid_search"] = {name: table for name, table in searched.items() if table}
    report["ablation"] = {name: variants for name, variants in ablation.items() if variants}
    report["trees"] = {name: trees for name, trees in fitted_trees.items() if trees}
    report_dir = settings.reports_dir / spec.name
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"{stamp}.json").write_text(json.dumps(report, indent=2, default=str))
    (report_dir / f"{stamp}.md").write_text(render_report(report))
    days = (data.examples["prediction_time"].iloc[test_rows].max()
            - data.examples["prediction_time"].iloc[test_rows].min()) / pd.Timedelta(days=1)
    report["html_report"] = str(write_report_html(
        report, held_out_scores, {k: v for k, v in ablation.items() if v}, spec.operating_threshold,
        stays_per_day=len(test_rows) / max(days, 1.0), folder=report_dir, stem=stamp))
    for row in rows:
        row["report_uri"] = settings.stored_path(report_dir / f"{stamp}.md")
    registry.register(wh, rows, selected_version, promote=promote)
    report["promoted_version"] = selected_version if promote else None
    return report


def _single_modalities(spec: ModelSpec, model, inputs: ModelInputs, y: np.ndarray) -> dict[str, float]:
    """A late-fusion candidate's held-out primary metric on the rows that have every modality,
    fused and from each single modality's stacker alone (the ablation of the papers)."""
    complete = model.complete_cases(inputs)
    if len(complete) < 10:
        return {}
    subset = inputs.take(complete)
    out = {"all modalities (complete cases)": primary_metric(spec, task_metrics(spec, model, subset, y[complete])[0])}
    for modality in model.modalities:
        if (modality,) in model.fusion_.stackers_:
            single = task_metrics(spec, model, subset, y[complete], only=(modality,))[0]
            out[f"only {modality}"] = primary_metric(spec, single)
    return out


def _withheld_modalities(spec: ModelSpec, model, inputs: ModelInputs, y: np.ndarray) -> dict[str, float]:
    """A model's held-out primary metric with each embedded modality withheld (mask set to
    absent), and on the patients who have every modality."""
    if not inputs.masks:
        return {}
    out = {}
    for m in inputs.masks:
        withheld = ModelInputs(inputs.tabular, inputs.embeddings, {**inputs.masks, m: np.zeros_like(inputs.masks[m])})
        out[f"without {m}"] = primary_metric(spec, task_metrics(spec, model, withheld, y)[0])
    complete = np.flatnonzero(np.all([presence(mask) for mask in inputs.masks.values()], axis=0))
    if len(complete) >= 10:  # the rows a late-fusion ablation is read on
        out["all modalities (complete cases)"] = primary_metric(
            spec, task_metrics(spec, model, inputs.take(complete), y[complete])[0])
    return {k: v for k, v in out.items() if v is not None}


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


def _report(spec, as_of, data, train_rows, test_rows, results, best, pretraining, stay_embeddings, failures) -> dict:
    y = (data.examples["label"] != 0).to_numpy().astype(int)   # outcome / any class but the first / event
    return {
        "model": spec.name, "title": spec.title, "training_as_of": str(as_of), "task": spec.task,
        "classes": list(spec.classes), "horizon_days": spec.horizon_days,
        "label_counts": {spec.classes[k] if spec.task != "survival" else str(k): int(v)
                         for k, v in data.examples["label"].value_counts().sort_index().items()},
        "data_snapshot": data.snapshot,
        "examples": int(len(y)), "positives": int(y.sum()),
        "train": {"n": int(len(train_rows)), "positives": int(y[train_rows].sum()),
                  "patients": int(data.examples["subject_id"].iloc[train_rows].nunique())},
        "held_out": {"n": int(len(test_rows)), "positives": int(y[test_rows].sum()),
                     "patients": int(data.examples["subject_id"].iloc[test_rows].nunique())},
        "patients_on_both_sides": int(len(set(data.examples["subject_id"].iloc[train_rows])
                                          & set(data.examples["subject_id"].iloc[test_rows]))),
        "modality_coverage": {m: round(float(presence(mask).mean()), 3) for m, (_, mask) in stay_embeddings.items()},
        "encoder_pretraining": pretraining,
        "quarantined_rows": int(data.quarantine["record_id"].nunique()),
        "unreadable_files": failures.groupby("reason").size().to_dict() if not failures.empty else {},
        "candidates": results, "selected": best, "promote_metric": spec.promote_metric,
    }


def render_report(report: dict) -> str:
    lines = [f"# {report['title']} — training report", "",
             f"- trained on data known by {report['training_as_of']}",
             f"- {report['examples']} examples ({report['positives']} positive); "
             f"train {report['train']['n']} / held out {report['held_out']['n']} "
             f"(patient-level split, {report['patients_on_both_sides']} patients on both sides)",
             "- modality coverage: " + ", ".join(f"{m} {v:.0%}" for m, v in report["modality_coverage"].items()),
             f"- quarantined rows: {report['quarantined_rows']}; unreadable files: {report['unreadable_files'] or 0}",
             "", "| candidate | AUROC | AUPRC | Brier | sensitivity | specificity | PPV | alert rate |",
             "|---|---|---|---|---|---|---|---|"]
    if report.get("task", "binary") != "binary":
        return _render_task_report(report, lines[:6])
    for name, m in report["candidates"].items():
        mark = " (selected)" if name == report["selected"] else ""
        lines.append(f"| {name}{mark} | {m['auroc']} | {m['auprc']} | {m['brier']} | {m['sensitivity']} | "
                     f"{m['specificity']} | {m['ppv']} | {m['alert_rate']} |")
    lines += ["", f"Held-out metrics at the operating threshold {next(iter(report['candidates'].values()))['threshold']}."]
    return "\n".join(lines) + "\n"


def _render_task_report(report: dict, lines: list[str]) -> str:
    lines[3] = (f"- {report['examples']} examples, label counts {report['label_counts']}; train {report['train']['n']} / "
                f"held out {report['held_out']['n']} (patient-level split, {report['patients_on_both_sides']} on both sides)")
    lines.append("")  # a table right after a list would continue its last item
    if report["task"] == "multiclass":
        lines += ["| candidate | accuracy | macro F1 | macro AUROC | Brier | "
                  + " | ".join(f"AUROC {c}" for c in report["classes"]) + " |",
                  "|---" * (5 + len(report["classes"])) + "|"]
        for name, m in report["candidates"].items():
            mark = " (selected)" if name == report["selected"] else ""
            lines.append(f"| {name}{mark} | {m['accuracy']} | {m['macro_f1']} | {m['auroc']} | {m['brier']} | "
                         + " | ".join(f"{m['per_class'][c]['auroc']} {m['per_class'][c]['auroc_ci95']}"
                                      for c in report["classes"]) + " |")
    else:
        lines += ["| candidate | C-index (95 % CI) | events | AUROC at horizon | Brier at horizon |",
                  "|---|---|---|---|---|"]
        for name, m in report["candidates"].items():
            mark = " (selected)" if name == report["selected"] else ""
            lines.append(f"| {name}{mark} | {m['c_index']} {m['c_index_ci95']} | {m['events']} | {m['auroc']} | "
                         f"{m['brier']} |")
    return "\n".join(lines) + "\n"



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
