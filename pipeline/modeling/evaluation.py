"""Evaluation the way a clinical reviewer reads it: discrimination with bootstrap confidence
intervals, calibration slope and intercept, Brier score, the operating point, and baselines
measured in the same report (the metrics themselves: :mod:`pipeline.modeling.metrics`).

Two procedures share these metrics:

* :func:`cross_validate` — patient-level stratified k-fold on the warehouse's labelled cohort:
  every candidate of the spec (and a logistic recalibration of each reference severity score,
  e.g. SAPS-I) is fitted on k-1 folds and predicts the held-out fold; the pooled out-of-fold
  predictions are evaluated. All preprocessing is fitted inside the candidates, so nothing from
  a held-out fold reaches a fitted statistic.
* :func:`evaluate_external` — a promoted model version and its sibling candidates trained in the
  same run score a cohort they have never seen, with no refitting.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold

from pipeline.config import ALL_TIME
from pipeline.modeling.estimators import make_candidate
from pipeline.modeling.inputs import build_inputs
from pipeline.modeling.metrics import evaluation_metrics
from pipeline.modeling.training_set import training_set
from pipeline.store import features as stored_features
from pipeline.store import registry as stored_registry

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    report: dict
    markdown: str
    paths: dict[str, Path]


def _reference_scores(wh, stay_ids) -> pd.DataFrame:
    """``stay_id`` × score name (e.g. SAPS-I) for the stays, where the source shipped them."""
    scores = stored_features.reference_scores(wh, stay_ids)
    if scores.empty:
        return pd.DataFrame(index=pd.Index(stay_ids, name="stay_id"))
    return scores.pivot_table(index="stay_id", columns="score", values="value").reindex(stay_ids)


def _raw_score_metrics(references: pd.DataFrame, y: np.ndarray, spec) -> dict[str, dict]:
    """Discrimination of each reference score as it is (a ranking, not a probability)."""
    results = {}
    for name in references.columns:
        score = references[name].to_numpy(dtype=float)
        known = ~np.isnan(score)
        results[f"{name} (raw score)"] = evaluation_metrics(y[known], score[known], spec.operating_threshold,
                                                            seed=spec.seed, is_probability=False)
    return results


def _recalibrated(train_score: np.ndarray, y_train: np.ndarray, test_score: np.ndarray) -> np.ndarray:
    """A reference score turned into a probability by a logistic fit on the training folds."""
    fill = np.nanmedian(train_score)
    model = LogisticRegression(max_iter=1000).fit(np.nan_to_num(train_score, nan=fill)[:, None], y_train)
    return model.predict_proba(np.nan_to_num(test_score, nan=fill)[:, None])[:, 1]


def cross_validate(wh, settings, spec, folds: int = 5, as_of: datetime | None = None) -> Evaluation:
    """Patient-level stratified ``folds``-fold cross-validation of every tabular candidate."""
    as_of = as_of or ALL_TIME
    data = training_set(wh, settings, spec, as_of)
    candidates = [c for c in spec.candidates if c.inputs == ("tabular",)]
    skipped = [c.name for c in spec.candidates if c not in candidates]
    inputs = build_inputs(spec, data.features, {})
    y = data.examples["label"].to_numpy().astype(int)
    groups = data.examples["subject_id"].to_numpy()
    references = _reference_scores(wh, data.examples["stay_id"].tolist())
    predictions = {c.name: np.full(len(y), np.nan) for c in candidates}
    predictions |= {f"{name} (logistic recalibration)": np.full(len(y), np.nan) for name in references.columns}
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=spec.seed)
    for fold, (train_rows, test_rows) in enumerate(splitter.split(np.zeros(len(y)), y, groups), start=1):
        log.info("%s: fold %d/%d (%d train / %d held out)", spec.name, fold, folds, len(train_rows), len(test_rows))
        train_in, test_in = inputs.take(train_rows), inputs.take(test_rows)
        for candidate in candidates:
            model = make_candidate(candidate.kind, candidate.inputs, candidate.params, spec.seed, spec.preprocessing,
                               spec.poolings())
            model.fit(train_in, y[train_rows], groups[train_rows])
            predictions[candidate.name][test_rows] = model.predict_risk(test_in)
        for name in references.columns:
            score = references[name].to_numpy(dtype=float)
            predictions[f"{name} (logistic recalibration)"][test_rows] = _recalibrated(
                score[train_rows], y[train_rows], score[test_rows])
    results = {name: evaluation_metrics(y, p, spec.operating_threshold, seed=spec.seed)
               for name, p in predictions.items()}
    results |= _raw_score_metrics(references, y, spec)
    report = {
        "kind": "cross-validation", "model": spec.name, "title": spec.title, "folds": folds,
        "split": "patient-level StratifiedGroupKFold", "examples": int(len(y)), "positives": int(y.sum()),
        "patients": int(len(set(groups))), "candidates_not_cross_validated": skipped,
        "quarantined_rows": int(data.quarantine["record_id"].nunique()) if not data.quarantine.empty else 0,
        "results": results,
        "generated_at": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds"),
    }
    return _write(settings, spec, report, "cv")


def evaluate_external(wh_eval, settings, spec, bundles: dict[str, object], promoted: str,
                      excluded_subjects: set[int] | None = None) -> Evaluation:
    """Score the labelled cohort in ``wh_eval`` with already-trained bundles (no refitting)."""
    data = training_set(wh_eval, settings, spec, ALL_TIME)
    keep = ~data.examples["subject_id"].isin(excluded_subjects or set())
    examples = data.examples[keep].reset_index(drop=True)
    features = data.features[keep.to_numpy()].reset_index(drop=True)
    inputs = build_inputs(spec, features, {})
    y = examples["label"].to_numpy().astype(int)
    results = {}
    for name, bundle in bundles.items():
        label = f"{name} (promoted)" if name == promoted else name
        results[label] = evaluation_metrics(y, bundle.model.predict_risk(inputs), spec.operating_threshold,
                                            seed=spec.seed)
    references = _reference_scores(wh_eval, examples["stay_id"].tolist())
    results |= _raw_score_metrics(references, y, spec)
    report = {
        "kind": "external", "model": spec.name, "title": spec.title, "promoted": promoted,
        "versions": {name: bundle.version for name, bundle in bundles.items()},
        "examples": int(len(y)), "positives": int(y.sum()), "patients": int(examples["subject_id"].nunique()),
        "excluded_seen_in_training": int((~keep).sum()),
        "quarantined_rows": int(data.quarantine["record_id"].nunique()) if not data.quarantine.empty else 0,
        "results": results,
        "generated_at": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds"),
    }
    return _write(settings, spec, report, "evaluation")


def _cell(value) -> str:
    return "–" if value is None else str(value)


def render(report: dict) -> str:
    title = "cross-validation" if report["kind"] == "cross-validation" else "evaluation on unseen records"
    lines = [f"# {report['title']} — {title}", ""]
    if report["kind"] == "cross-validation":
        lines.append(f"- {report['folds']}-fold {report['split']}: {report['examples']} examples "
                     f"({report['positives']} positive) from {report['patients']} patients; pooled out-of-fold predictions")
    else:
        lines.append(f"- {report['examples']} examples ({report['positives']} positive) from {report['patients']} patients, "
                     f"scored by the versions trained together with the promoted one ({report['promoted']}); no refitting")
        lines.append(f"- records also seen in training (left out): {report['excluded_seen_in_training']}")
    lines += [f"- quarantined source rows: {report['quarantined_rows']}", "",
              "| model | AUROC (95 % CI) | AUPRC (95 % CI) | calibration slope | calibration intercept | Brier "
              "| sensitivity | specificity | PPV | alert rate |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in report["results"].items():
        lines.append(f"| {name} | {m['auroc']} ({m['auroc_ci95'][0]}–{m['auroc_ci95'][1]}) "
                     f"| {m['auprc']} ({m['auprc_ci95'][0]}–{m['auprc_ci95'][1]}) "
                     f"| {_cell(m.get('calibration_slope'))} | {_cell(m.get('calibration_intercept'))} "
                     f"| {_cell(m.get('brier'))} | {_cell(m.get('sensitivity'))} | {_cell(m.get('specificity'))} "
                     f"| {_cell(m.get('ppv'))} | {_cell(m.get('alert_rate'))} |")
    threshold = next((m["threshold"] for m in report["results"].values() if "threshold" in m), None)
    lines += ["", f"Operating threshold {threshold}."]
    if any(name.endswith("(raw score)") for name in report["results"]):
        lines[-1] += " A raw severity score is a ranking, not a probability: discrimination only."
    if any(name.endswith("(logistic recalibration)") for name in report["results"]):
        lines[-1] += " Its logistic recalibration, fitted on the training folds, is the probability baseline."
    return "\n".join(lines) + "\n"


def _write(settings, spec, report: dict, prefix: str) -> Evaluation:
    folder = settings.reports_dir / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    stamp = report["generated_at"].replace(":", "").replace("-", "")
    markdown = render(report)
    paths = {"json": folder / f"{prefix}-{stamp}.json", "markdown": folder / f"{prefix}-{stamp}.md"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str))
    paths["markdown"].write_text(markdown)
    return Evaluation(report=report, markdown=markdown, paths=paths)


SOURCES = {  # source -> (default spec, reference training records, their outcomes file)
    "physionet2012": ("physionet2012_mortality", "set-a.tar.xz", "Outcomes-a.txt"),
    "physionet2019": ("physionet2019_sepsis", "training_setA_p000001-p009893.tar.xz", None),
}


def reference_training_data(source: str) -> tuple[Path, Path | None]:
    """Where a source's reference training set lives: ``VIGIL_<SOURCE>_TRAIN_RECORDS`` /
    ``..._OUTCOMES``, else the copy in the project's ``data/`` folder."""
    import os

    from pipeline.config import PROJECT_ROOT

    _, records_name, outcomes_name = SOURCES[source]
    prefix = f"VIGIL_{source.upper()}_TRAIN"
    folder = PROJECT_ROOT / "data" / source
    records = Path(os.environ.get(f"{prefix}_RECORDS", folder / records_name))
    outcomes = os.environ.get(f"{prefix}_OUTCOMES", folder / outcomes_name if outcomes_name else "")
    return records, Path(outcomes) if outcomes else None


def load_source(wh, source: str, records: Path, outcomes: Path | None, progress: bool = True):
    from pipeline.sources import physionet2012, physionet2019

    if source == "physionet2012":
        if outcomes is None:
            raise ValueError("PhysioNet 2012 records need their outcomes file (--outcomes Outcomes-*.txt) for labels")
        return physionet2012.load(wh, records, outcomes, progress=progress)
    if source == "physionet2019":
        return physionet2019.load(wh, records, progress=progress)
    raise ValueError(f"unknown source {source!r}; choose from {sorted(SOURCES)}")


def evaluate_source(settings, spec, source: str, records: Path, outcomes: Path | None, *,
                    progress: bool = True) -> Evaluation:
    """``vigil evaluate``: load labelled records into a scratch warehouse and score them with the
    promoted version of ``spec`` in the home warehouse's registry (and the candidates trained
    with it, as baselines). Without a promoted version, one is first trained on the source's
    reference training set, loaded into the home warehouse; the evaluation records never are."""
    import dataclasses
    import tempfile

    from pipeline.modeling import registry
    from pipeline.modeling.train import train_spec
    from pipeline.store.warehouse import connect

    if source not in SOURCES:
        raise ValueError(f"vigil evaluate does not know the source {source!r}; choose from {sorted(SOURCES)}")
    for path in (records, outcomes):
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist")
    if source == "physionet2012" and outcomes is None:
        raise ValueError("evaluating PhysioNet 2012 records needs their outcomes file (--outcomes Outcomes-*.txt)")
    wh = connect(settings)
    wh.create_schema()
    promoted = registry.promoted(wh, spec.name)
    if promoted is None:
        train_records, train_outcomes = reference_training_data(source)
        if not train_records.exists():
            raise FileNotFoundError(f"{spec.name} has no promoted version in {settings.home} and the reference "
                                    f"training set {train_records} is absent: train one with `vigil train`")
        if train_records.resolve() == Path(records).resolve():
            raise ValueError(f"{records} is the reference training set: evaluate on records the model has not seen")
        log.warning("%s has no promoted version in %s: training one on %s first", spec.name, settings.home, train_records)
        load_source(wh, source, train_records, train_outcomes, progress)
        train_spec(wh, settings, spec, datetime.now(), progress=progress, promote=True)
        promoted = registry.promoted(wh, spec.name)
    siblings = stored_registry.trained_together(wh, spec.name, promoted["trained_at"])
    bundles = {row.candidate: registry.load_bundle(row.artifact_uri, settings.home) for row in siblings.itertuples()}
    seen = set(bundles[promoted["candidate"]].training.get("subjects", []))
    with tempfile.TemporaryDirectory(prefix="vigil-evaluate-") as scratch:
        scratch_settings = dataclasses.replace(settings, warehouse_url=f"sqlite:///{Path(scratch) / 'evaluate.db'}")
        wh_eval = connect(scratch_settings)
        wh_eval.create_schema()
        load_source(wh_eval, source, records, outcomes, progress)
        evaluation = evaluate_external(wh_eval, settings, spec, bundles, promoted["candidate"], seen)
        wh_eval.dispose()
    return evaluation
