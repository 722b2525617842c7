"""The training report as one HTML page with PNG plots, stored with the model versions it describes.

For each candidate, on the held-out patients: AUROC and AUPRC with bootstrap 95 % intervals,
accuracy, sensitivity, specificity, precision, F1, F2, Brier score and calibration slope /
intercept at the operating threshold; ROC and precision-recall curves, the calibration curve and
the confusion matrix; an alert-burden table (alerts per 100 scored stays and per day, PPV and
sensitivity at fixed alert rates); and the modality ablation: every single-input model trained
in the run beside the fused one, and the fused model's held-out AUROC with each modality
withheld. The PNG files are written beside the page and embedded in it, so the page shows its
plots opened from disk, through the Vigil page in Airflow, or sent on.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve  # noqa: E402

from pipeline.modeling.metrics import alert_burden, classification_metrics  # noqa: E402


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def curves_png(held_out: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    figure, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, (y, p) in held_out.items():
        fpr, tpr, _ = roc_curve(y, p)
        roc.plot(fpr, tpr, label=name)
        precision, recall, _ = precision_recall_curve(y, p)
        pr.plot(recall, precision, label=name)
    roc.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    prevalence = float(np.mean(next(iter(held_out.values()))[0]))
    pr.axhline(prevalence, ls="--", c="grey", lw=0.8)
    roc.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (held out)")
    pr.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision-recall (held out)", ylim=(0, 1.02))
    roc.legend(loc="lower right", fontsize=8)
    pr.legend(loc="upper right", fontsize=8)
    return _png(figure)


def calibration_png(held_out: dict[str, tuple[np.ndarray, np.ndarray]], bins: int = 10) -> bytes:
    figure, axis = plt.subplots(figsize=(5, 4.2))
    for name, (y, p) in held_out.items():
        observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="quantile")
        axis.plot(predicted, observed, marker="o", label=name)
    axis.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    axis.set(xlabel="predicted probability", ylabel="observed rate", title="Calibration (deciles of risk)",
             xlim=(0, 1), ylim=(0, 1))
    axis.legend(loc="upper left", fontsize=8)
    return _png(figure)


def confusion_png(y: np.ndarray, p: np.ndarray, threshold: float, name: str) -> bytes:
    matrix = confusion_matrix(np.asarray(y).astype(int), np.asarray(p) >= threshold, labels=[0, 1])
    figure, axis = plt.subplots(figsize=(3.6, 3.2))
    axis.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center",
                  color="white" if count > matrix.max() / 2 else "black")
    axis.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["no alert", "alert"], yticklabels=["no event", "event"],
             title=f"{name} at {threshold:g}")
    return _png(figure)


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('–' if v is None or v != v else str(v))}</td>" for v in row)
                   + "</tr>" for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(folder: Path, name: str, png: bytes, alt: str) -> str:
    (folder / name).write_bytes(png)
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def write_report_html(report: dict, held_out: dict[str, tuple[np.ndarray, np.ndarray]],
                      ablation: dict[str, dict[str, float]], threshold: float, stays_per_day: float,
                      folder: Path, stem: str) -> Path:
    """``<folder>/<stem>.html`` and its PNGs in ``<folder>/<stem>/``. ``held_out``: per candidate,
    the held-out labels and calibrated probabilities; ``ablation``: per fused candidate, its
    held-out AUROC with each modality withheld."""
    plots = folder / stem
    plots.mkdir(parents=True, exist_ok=True)
    unplotted = [name for name, (y, _) in held_out.items() if len(set(np.asarray(y).tolist())) < 2]
    held_out = {name: scores for name, scores in held_out.items() if name not in unplotted}
    if report["selected"] not in held_out:  # e.g. no survival status known yet at the horizon
        return _task_only_page(report, ablation, unplotted, plots, folder / f"{stem}.html")
    metrics = {name: classification_metrics(y, p, threshold) for name, (y, p) in held_out.items()}
    rows = []
    for name, m in metrics.items():
        rows.append({"candidate": name + (" (selected)" if name == report["selected"] else ""),
                     "AUROC [95% CI]": f"{m['auroc']} [{m['auroc_ci95'][0]}, {m['auroc_ci95'][1]}]",
                     "AUPRC [95% CI]": f"{m['auprc']} [{m['auprc_ci95'][0]}, {m['auprc_ci95'][1]}]",
                     "accuracy": m["accuracy"], "sensitivity": m["sensitivity"], "specificity": m["specificity"],
                     "precision": m["precision"], "F1": m["f1"], "F2": m["f2"], "Brier": m["brier"],
                     "calibration slope": m["calibration_slope"], "calibration intercept": m["calibration_intercept"]})
    ablation_rows = _ablation_rows(report, ablation)
    selected = report["selected"]
    y, p = held_out[selected]
    title = html.escape(f"{report['title']} — training report")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{title}</h1>",
        f"<p>Trained on data known by {html.escape(str(report['training_as_of']))}: {report['examples']} examples "
        f"({report['positives']} positive); train {report['train']['n']} / held out {report['held_out']['n']} "
        f"(patient-level split, {report['patients_on_both_sides']} patients on both sides). Operating threshold "
        f"{threshold:g}; selected: <b>{html.escape(selected)}</b> (by {html.escape(report['promote_metric'])}).</p>",
        *_task_sections(report, plots),
        f"<h2>Held-out metrics{' of the ' + html.escape(_BINARY_VIEW[report.get('task', 'binary')]) if report.get('task', 'binary') != 'binary' else ''}</h2>",
        _table(pd.DataFrame(rows)),
        "<h2>Discrimination</h2>", _image(plots, "curves.png", curves_png(held_out), "ROC and precision-recall curves"),
        "<h2>Calibration</h2>", _image(plots, "calibration.png", calibration_png(held_out), "calibration curve"),
        "<h2>Confusion matrices at the operating threshold</h2><div class='row'>",
        *[_image(plots, f"confusion-{i}.png", confusion_png(y_c, p_c, threshold, name), f"confusion matrix {name}")
          for i, (name, (y_c, p_c)) in enumerate(held_out.items())],
        "</div><h2>Modality ablation</h2>",
        "<p>Every model of the run on the same held-out patients; an early-fusion model with each modality "
        "withheld (its presence mask set to absent, as when a stay has no such record); a late-fusion model on the "
        "held-out patients with every modality, fused and from each single modality's model alone.</p>",
        _table(pd.DataFrame(ablation_rows)),
        *_importance_sections(report, plots),
        f"<h2>Alert burden ({html.escape(selected)})</h2>",
        f"<p>Alerting the top share of scores; per day at {stays_per_day:.0f} scored stays a day (the held-out "
        f"cohort's volume).</p>", _table(alert_burden(y, p, stays_per_day)),
        "</body></html>",
    ]
    path = folder / f"{stem}.html"
    path.write_text("\n".join(parts))
    return path


def importance_png(summary: dict[str, dict[str, float]], title: str) -> bytes:
    """Horizontal bars of mean |SHAP| per factor, one panel per class (or the single output)."""
    figure, axes = plt.subplots(1, len(summary), figsize=(4.2 * len(summary), 0.32 * max(map(len, summary.values()))
                                                            + 1.2), squeeze=False)
    for axis, (output, values) in zip(axes[0], summary.items()):
        factors = list(values)[::-1]
        axis.barh(factors, [values[f] for f in factors], color="#486581")
        axis.set(xlabel="mean |SHAP|", title=output)
        axis.tick_params(axis="y", labelsize=8)
    figure.suptitle(title, fontsize=10)
    return _png(figure)


def _importance_sections(report: dict, plots: Path) -> list[str]:
    """The SHAP summary of every candidate with boosted trees on the tabular input."""
    importance = report.get("factor_importance") or {}
    if not importance:
        return []
    parts = ["<h2>Factor importance</h2>", "<p>Mean absolute SHAP value of each factor on the held-out patients "
             "(XGBoost's exact TreeSHAP of the tabular model, summed over a factor's columns), per class for a "
             "multiclass model.</p>"]
    for i, (name, summary) in enumerate(importance.items()):
        parts.append(_image(plots, f"importance-{i}.png", importance_png(summary, name), f"SHAP summary {name}"))
    return parts


def _ablation_rows(report: dict, ablation: dict[str, dict[str, float]]) -> list[dict]:
    metric = report["promote_metric"]
    rows = [{"model": name, "inputs": "as trained", f"held-out {metric}": m.get(metric)}
            for name, m in report["candidates"].items()]
    for name, variants in ablation.items():
        rows += [{"model": name, "inputs": label, f"held-out {metric}": value} for label, value in variants.items()]
    return rows


def _task_only_page(report: dict, ablation: dict, unplotted: list[str], plots: Path, path: Path) -> Path:
    """The page when the binary view holds one class (no plot can be drawn): the task's own
    metrics and the ablation, and why the curves are absent."""
    title = html.escape(f"{report['title']} — training report")
    path.write_text("\n".join([
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{title}</h1>", *_task_sections(report, plots),
        f"<p>No ROC, calibration or alert-burden plots: the held-out {html.escape(_BINARY_VIEW.get(report.get('task'), 'outcome'))} "
        f"has a single class for {html.escape(', '.join(unplotted))} (too little follow-up by the training date).</p>",
        "<h2>Modality ablation</h2>", _table(pd.DataFrame(_ablation_rows(report, ablation))), "</body></html>"]))
    return path


_BINARY_VIEW = {"multiclass": "probability of any class but the first",
                "survival": "probability of the event within the horizon (patients whose status then is known)"}


def kaplan_meier_png(groups: dict[str, dict], title: str) -> bytes:
    """Step curves of each risk group's Kaplan-Meier estimate (``metrics.group_survival``)."""
    figure, axis = plt.subplots(figsize=(6, 4.2))
    for name, group in groups.items():
        axis.step([0.0, *group["days"]], [1.0, *group["surviving"]], where="post",
                  label=f"{name} risk (n={group['n']}, {group['events']} events)")
    axis.set(xlabel="days after the prediction", ylabel="event-free (Kaplan-Meier)", ylim=(0, 1.02), title=title)
    axis.legend(loc="lower left", fontsize=8)
    return _png(figure)


def _task_sections(report: dict, plots: Path) -> list[str]:
    """Multiclass: per-class figures and the confusion matrix of the selected candidate;
    survival: Harrell's C of every candidate, and the selected one's Kaplan-Meier curves by
    predicted risk tertile with their log-rank test."""
    task, selected = report.get("task", "binary"), report["selected"]
    if task == "multiclass":
        m = report["candidates"][selected]
        per_class = pd.DataFrame([{"class": c, **{k: v for k, v in figures.items()}}
                                  for c, figures in m["per_class"].items()])
        confusion = pd.DataFrame(m["confusion"], index=[f"true {c}" for c in report["classes"]],
                                 columns=[f"predicted {c}" for c in report["classes"]]).reset_index(names="")
        summary = pd.DataFrame([{"candidate": name, "accuracy": c["accuracy"], "macro F1": c["macro_f1"],
                                 "macro AUROC": c["auroc"], "Brier": c["brier"]}
                                for name, c in report["candidates"].items()])
        return ["<h2>Multiclass metrics</h2>", _table(summary),
                f"<h3>Per class ({html.escape(selected)}, one-vs-rest; AUROC with bootstrap 95% CI)</h3>",
                _table(per_class), "<h3>Confusion matrix (argmax)</h3>", _table(confusion)]
    if task == "survival":
        summary = pd.DataFrame([{"candidate": name, "Harrell's C": c["c_index"], "C 95% CI": c["c_index_ci95"],
                                 "events": c["events"], "n": c["n"], f"AUROC at {c['horizon_days']:g} days": c["auroc"],
                                 "Brier at horizon": c["brier"], "observed risk (Kaplan-Meier)": c.get("observed_risk"),
                                 "mean predicted": c.get("mean_predicted")} for name, c in report["candidates"].items()])
        sections = ["<h2>Survival metrics</h2>", _table(summary),
                    "<p>At the horizon, AUROC and Brier score weight each patient by the inverse probability of "
                    "still being followed (IPCW), and the observed risk is the Kaplan-Meier event rate. The ROC and "
                    "calibration plots below use only the patients whose status at the horizon is known, which "
                    "over-represents early events.</p>"]
        groups = report["candidates"][selected].get("risk_groups")
        if groups:
            test = (f"log-rank chi-square {groups['log_rank_chi2']} on {groups['log_rank_df']} df, "
                    f"p = {groups['log_rank_p']:g}" if groups["log_rank_p"] is not None
                    else "no log-rank test (a group has nobody at risk at any event time)")
            sections += [f"<h3>Kaplan-Meier by predicted risk tertile ({html.escape(selected)})</h3>",
                         f"<p>The held-out patients in thirds of predicted risk; {test}.</p>",
                         _image(plots, "kaplan-meier.png", kaplan_meier_png(groups["groups"], test),
                                "Kaplan-Meier curves by predicted risk group")]
        return sections
    return []


_STYLE = ("body{font-family:system-ui,sans-serif;margin:24px;color:#1f2933}table{border-collapse:collapse;"
          "margin:8px 0 16px}td,th{border-bottom:1px solid #d9e2ec;padding:4px 10px;text-align:left;font-size:13px}"
          "th{background:#f0f4f8}img{max-width:100%;margin:4px 12px 12px 0}.row{display:flex;flex-wrap:wrap}")
