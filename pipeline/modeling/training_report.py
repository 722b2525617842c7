"""The training report: what a run saw, how it split, and every candidate's held-out metrics,
as JSON, Markdown and a self-contained HTML page beside each other in ``reports/<model>/``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.modeling.inputs import presence
from pipeline.modeling.report_html import write_report_html
from pipeline.modeling.spec import ModelSpec
from pipeline.modeling.training_set import TrainingSet


def factor_importance(spec: ModelSpec, model, inputs, top: int = 15) -> dict[str, dict[str, float]] | None:
    """Mean |SHAP| of each factor on the held-out rows, from the model's exact TreeSHAP values
    (``factor_shap``), per class of a multiclass model, else of the outcome's log-odds or the
    log hazard: the papers' SHAP summary. ``None`` for a model without boosted trees on the
    tabular input."""
    shap = model.factor_shap(inputs)
    if shap is None:
        return None
    names, values = shap
    if values.shape[1] > 1:   # one output per class the model was fitted on (a class absent then has none)
        outputs = [spec.classes[int(c)] for c in getattr(model, "classes_", range(values.shape[1]))]
    else:
        outputs = ["log hazard"] if spec.task == "survival" else [f"log-odds of {spec.classes[-1]}"]
    summary = {}
    for k, output in enumerate(outputs):
        mean = np.abs(values[:, k]).mean(axis=0)
        summary[output] = {names[j]: round(float(mean[j]), 4) for j in np.argsort(-mean, kind="stable")[:top]}
    return summary


def write_training_report(report: dict, spec: ModelSpec, examples: pd.DataFrame, test_rows: np.ndarray,
                          held_out_scores: dict, ablations: dict, folder: Path, stem: str) -> Path:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>.html`` in ``folder``; returns the Markdown's path
    (what the registry points at). ``report["html_report"]`` gets the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str))
    (folder / f"{stem}.md").write_text(render_report(report))
    times = examples["prediction_time"].iloc[test_rows]
    days = (times.max() - times.min()) / pd.Timedelta(days=1)
    report["html_report"] = str(write_report_html(
        report, held_out_scores, {k: v for k, v in ablations.items() if v}, spec.operating_threshold,
        stays_per_day=len(test_rows) / max(days, 1.0), folder=folder, stem=stem))
    return folder / f"{stem}.md"


def training_report(spec: ModelSpec, as_of: datetime, data: TrainingSet, train_rows: np.ndarray,
                    test_rows: np.ndarray, results: dict, best: str, pretraining: dict,
                    stay_embeddings: dict[str, tuple[np.ndarray, np.ndarray]], failures: pd.DataFrame) -> dict:
    """The report's numbers: the data, the split, every candidate's held-out metrics, the choice."""
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
        lines += ["| candidate | C-index (95 % CI) | events | AUROC at horizon | Brier at horizon | "
                  "log-rank p (risk tertiles) |", "|---|---|---|---|---|---|"]
        for name, m in report["candidates"].items():
            mark = " (selected)" if name == report["selected"] else ""
            log_rank = (m.get("risk_groups") or {}).get("log_rank_p")
            lines.append(f"| {name}{mark} | {m['c_index']} {m['c_index_ci95']} | {m['events']} | {m['auroc']} | "
                         f"{m['brier']} | {log_rank} |")
    return "\n".join(lines) + "\n"
