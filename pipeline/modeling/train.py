"""Training a model spec: build labelled examples with the nightly stage functions, split by
patient, pre-train the ECG / image encoders on the training split, fit every candidate, compare
them on the held-out patients, register all versions and promote the best.

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
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupShuffleSplit

from pipeline.config import Settings, resolve_device
from pipeline.embed import cache
from pipeline.embed.modalities import (MODALITY_TABLE, decode_files, embed_records, failure_rows, hash_records,
                                       new_signal_encoder, stay_embedding)
from pipeline.embed.text import TextEncoder
from pipeline.features.windows import KEY, build_features
from pipeline.filestore import FileStore
from pipeline.modeling import encoder_training, registry
from pipeline.modeling.estimators import make_candidate
from pipeline.modeling.inputs import ModelInputs, build_inputs, presence
from pipeline.modeling.metrics import binary_metrics
from pipeline.modeling.report_html import write_report_html
from pipeline.modeling.spec import ModelSpec
from pipeline.monitoring import reference_quantiles
from pipeline.sources.mimic import extract, read_labels
from pipeline.validate.checks import enforce_thresholds, validate
from pipeline.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass
class TrainingSet:
    examples: pd.DataFrame        # stay_id, subject_id, prediction_time, label
    features: pd.DataFrame
    records: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame


def training_set(wh: Warehouse, settings: Settings, spec: ModelSpec, as_of: datetime) -> TrainingSet:
    """Labelled examples (see :func:`labelled_examples`) and their features, from data known by ``as_of``."""
    extraction = extract(wh, until=as_of)
    validation = validate(extraction.frames, as_of)
    enforce_thresholds(validation, settings.failure_rate_limit)
    cohort = validation.valid("cohort")
    examples = labelled_examples(cohort, wh, spec, as_of)
    if examples["label"].nunique() < 2:
        raise ValueError(f"{spec.name}: the training examples known by {as_of} hold only one label class "
                         f"({len(examples)} examples); load more data or move the training date later")
    features = build_features(validation.valid("events"), cohort, examples[KEY], spec.window_spec)
    records = {m: validation.valid(MODALITY_TABLE[m]) for m in spec.used_modalities() if m != "tabular"}
    return TrainingSet(examples=examples[["stay_id", "subject_id", "prediction_time", "label"]],
                       features=features, records=records, quarantine=validation.quarantine())


def labelled_examples(cohort: pd.DataFrame, wh: Warehouse, spec: ModelSpec, as_of: datetime) -> pd.DataFrame:
    """The spec's training examples: (stay, prediction time, label) for adult stays whose outcome
    was known by ``as_of`` and that were still in the ICU, outcome unknown, at prediction time.

    ``offset``: one example per stay at admission + offset. ``nightly``: one at every midnight
    of the stay (as the nightly run scores), up to the event; an ``event_within`` label is 1 when
    the event follows within the horizon.
    """
    contract = "event_labels" if spec.label_kind == "event_within" else "labels"
    labels = read_labels(wh, spec.label_query, as_of, contract).drop(columns=["subject_id"])
    examples = cohort.merge(labels, on="stay_id")
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
    if spec.label_kind == "event_within":
        examples = examples[~(examples["event_time"] <= examples["prediction_time"])]   # not after the event
        horizon = examples["prediction_time"] + pd.Timedelta(hours=spec.horizon_hours)
        examples = examples.assign(label=(examples["event_time"] <= horizon).astype("int64"))
    return examples.sort_values(["stay_id", "prediction_time"]).reset_index(drop=True)


def _record_labels(records: pd.DataFrame, examples: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """Records of the given examples' stays available at their prediction time, with labels."""
    chosen = examples.iloc[rows][["stay_id", "subject_id", "prediction_time", "label"]]
    joined = records.astype({"stay_id": "int64"}).merge(chosen, on="stay_id", suffixes=("", "_stay"))
    return joined[joined["time"] <= joined["prediction_time"]]


def train_spec(wh: Warehouse, settings: Settings, spec: ModelSpec, as_of: datetime, *, progress: bool = True) -> dict:
    device = resolve_device(settings.device)
    store = FileStore(settings.filestore)
    data = training_set(wh, settings, spec, as_of)
    y = data.examples["label"].to_numpy()
    groups = data.examples["subject_id"].to_numpy()
    train_rows, test_rows = next(GroupShuffleSplit(1, test_size=spec.test_fraction, random_state=spec.seed)
                                 .split(y, y, groups))
    log.info("%s: %d examples (%d train / %d held out), %d positive", spec.name, len(y), len(train_rows),
             len(test_rows), int(y.sum()))

    stay_embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    text_info, signal_encoders, pretraining, failures = None, {}, {}, []
    for modality, records in data.records.items():
        log.info("%s: embedding %d %s records", spec.name, len(records), modality)
        options = spec.modalities[modality]
        hashed, failed = hash_records(records, modality, store)
        failures.append(failed)
        if modality == "notes":
            encoder = TextEncoder(settings.text_encoder, max_tokens=settings.text_max_tokens,
                                  batch_size=settings.embed_batch_size, device=device,
                                  pooling=options.get("text_pooling", "mean"),
                                  overlap=settings.text_window_overlap, max_windows=settings.text_max_windows)
            vectors, failed, _ = embed_records(wh, modality, hashed, encoder, store, device=device, progress=progress)
            text_info, dim = encoder.describe(), encoder.dim
        else:
            encoder = new_signal_encoder(modality, {**options, "seed": spec.seed})
            arrays, bad = decode_files(hashed, encoder, store, progress=progress)
            unreadable = hashed[hashed["content_hash"].isin(bad)]
            failed = failure_rows(MODALITY_TABLE[modality], unreadable,
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
            vectors = dict(zip(keys, encoder.encode(np.stack([arrays[k] for k in keys]), device)))
            cache.store(wh, encoder.encoder_id, modality, vectors)
            signal_encoders[modality] = encoder
            dim = encoder.network.config["embedding_dim"]
        failures.append(failed)
        stay_embeddings[modality] = stay_embedding(hashed, vectors, data.examples, dim, options)

    inputs = build_inputs(spec, data.features, stay_embeddings)
    train_in, test_in = inputs.take(train_rows), inputs.take(test_rows)
    trained_at = datetime.now(timezone.utc).replace(tzinfo=None)
    stamp = trained_at.strftime("%Y%m%dT%H%M%S")
    results, rows, held_out_scores, ablation = {}, [], {}, {}
    for candidate in spec.candidates:
        log.info("%s: fitting %s (%s)", spec.name, candidate.name, candidate.kind)
        model = make_candidate(candidate.kind, candidate.inputs, candidate.params, spec.seed, spec.preprocessing,
                               spec.poolings())
        model.fit(_only(train_in, candidate.inputs), y[train_rows], groups[train_rows])
        held_out = model.predict_proba(_only(test_in, candidate.inputs))
        metrics = binary_metrics(y[test_rows], held_out, spec.operating_threshold)
        results[candidate.name] = metrics
        held_out_scores[candidate.name] = (y[test_rows], held_out)
        ablation[candidate.name] = _withheld_modalities(model, _only(test_in, candidate.inputs), y[test_rows])
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
                     "metrics_json": json.dumps(metrics, sort_keys=True), "artifact_uri": str(artifact)})
    promotable = [c.name for c in spec.candidates if not c.baseline]
    best = max(promotable, key=lambda name: results[name].get(spec.promote_metric) or -1)
    promoted_version = f"{stamp}-{best}"
    report = _report(spec, as_of, data, train_rows, test_rows, results, best, pretraining, stay_embeddings,
                     pd.concat(failures, ignore_index=True) if failures else pd.DataFrame(columns=["reason"]))
    report_dir = settings.home / "reports" / spec.name
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"{stamp}.json").write_text(json.dumps(report, indent=2, default=str))
    (report_dir / f"{stamp}.md").write_text(render_report(report))
    days = (data.examples["prediction_time"].iloc[test_rows].max()
            - data.examples["prediction_time"].iloc[test_rows].min()) / pd.Timedelta(days=1)
    report["html_report"] = str(write_report_html(
        report, held_out_scores, {k: v for k, v in ablation.items() if v}, spec.operating_threshold,
        stays_per_day=len(test_rows) / max(days, 1.0), folder=report_dir, stem=stamp))
    for row in rows:
        row["report_uri"] = str(report_dir / f"{stamp}.md")
    registry.register(wh, rows, promoted_version)
    return report


def _withheld_modalities(model, inputs: ModelInputs, y: np.ndarray) -> dict[str, float]:
    """Held-out AUROC of a model reading embeddings with each one withheld (mask set to absent)."""
    if not inputs.masks or len(set(y)) < 2:
        return {}
    return {m: round(float(roc_auc_score(y, model.predict_proba(ModelInputs(
        inputs.tabular, inputs.embeddings, {**inputs.masks, m: np.zeros_like(inputs.masks[m])})))), 4)
        for m in inputs.masks}


def _only(inputs, modalities):
    """The inputs a candidate may see (an XGBoost candidate never sees embeddings)."""
    keep = [m for m in modalities if m != "tabular"]
    return ModelInputs(tabular=inputs.tabular, embeddings={m: inputs.embeddings[m] for m in keep},
                       masks={m: inputs.masks[m] for m in keep})


def _report(spec, as_of, data, train_rows, test_rows, results, best, pretraining, stay_embeddings, failures) -> dict:
    y = data.examples["label"].to_numpy()
    return {
        "model": spec.name, "title": spec.title, "training_as_of": str(as_of),
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
        "candidates": results, "promoted": best, "promote_metric": spec.promote_metric,
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
    for name, m in report["candidates"].items():
        mark = " (promoted)" if name == report["promoted"] else ""
        lines.append(f"| {name}{mark} | {m['auroc']} | {m['auprc']} | {m['brier']} | {m['sensitivity']} | "
                     f"{m['specificity']} | {m['ppv']} | {m['alert_rate']} |")
    lines += ["", f"Held-out metrics at the operating threshold {next(iter(report['candidates'].values()))['threshold']}."]
    return "\n".join(lines) + "\n"



def as_of_for_run(logical_date: datetime | None, run_after: datetime) -> datetime:
    """A training run uses what was known at its logical date (or, without one, when it ran)."""
    moment = logical_date or run_after
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def train_named_spec(name: str, as_of: datetime, settings: Settings | None = None) -> dict:
    from pipeline.config import load_settings
    from pipeline.modeling.spec import load_spec
    from pipeline.warehouse import connect

    settings = settings or load_settings()
    return train_spec(connect(settings), settings, load_spec(settings.models_dir / f"{name}.yaml"), as_of,
                      progress=False)
