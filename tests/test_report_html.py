"""The HTML training report: metrics that agree with scikit-learn, an alert-burden table that
follows the scores, and PNG plots written beside the page and embedded in it."""

import base64
import re

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import fbeta_score, roc_auc_score

from pipeline.modeling.metrics import alert_burden, classification_metrics
from pipeline.modeling.report_html import write_report_html


def scores(n=2000, seed=0, signal=1.5):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.2).astype(int)
    p = 1 / (1 + np.exp(-(signal * (y - 0.5) * 2 + rng.normal(size=n) - 1.5)))
    return y, p


def test_metrics_at_the_operating_threshold_agree_with_scikit_learn():
    y, p = scores()
    m = classification_metrics(y, p, 0.3)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-4)
    assert m["auroc_ci95"][0] < m["auroc"] < m["auroc_ci95"][1]
    assert m["f2"] == pytest.approx(fbeta_score(y, p >= 0.3, beta=2), abs=1e-4)
    assert m["accuracy"] == pytest.approx(((p >= 0.3) == y).mean(), abs=1e-4)


def test_alert_burden_trades_alerts_for_sensitivity():
    y, p = scores()
    table = alert_burden(y, p, stays_per_day=40)
    assert table["alerts_per_100"].tolist() == pytest.approx([1, 2, 5, 10, 20, 30], abs=0.2)
    assert table["alerts_per_day"].iloc[-1] == pytest.approx(12, abs=0.2)
    assert table["sensitivity"].is_monotonic_increasing and table["threshold"].is_monotonic_decreasing
    assert table["ppv"].iloc[0] > y.mean() * 2  # the top of the list is rich in events


def test_the_report_page_embeds_its_plots_and_writes_them_beside_it(tmp_path):
    fused, tabular = scores(seed=1, signal=2.0), scores(seed=1, signal=1.0)
    report = {"title": "ICU <mortality>", "training_as_of": "2026-01-29", "examples": 2000, "positives": 400,
              "train": {"n": 1600}, "held_out": {"n": 2000}, "patients_on_both_sides": 0,
              "selected": "early_fusion", "promote_metric": "auroc",
              "candidates": {"xgboost_tabular": {"auroc": 0.7}, "early_fusion": {"auroc": 0.8}}}
    path = write_report_html(report, {"xgboost_tabular": tabular, "early_fusion": fused},
                             {"early_fusion": {"without notes": 0.61, "without ecg": 0.7}}, 0.3, 35.0, tmp_path,
                             "20260129T000000")
    page = path.read_text()
    assert "ICU &lt;mortality&gt;" in page and "<mortality>" not in page  # escaped
    embedded = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    written = sorted((tmp_path / "20260129T000000").glob("*.png"))
    assert len(embedded) == len(written) == 4  # curves, calibration, one confusion matrix per candidate
    for png in written:
        with Image.open(png) as image:
            assert image.size[0] > 250 and image.size[1] > 200
    assert base64.b64decode(embedded[0]) == (tmp_path / "20260129T000000" / "curves.png").read_bytes()
    assert "without notes" in page and "0.61" in page and "Alert burden (early_fusion)" in page


def test_a_survival_report_shows_kaplan_meier_curves_by_risk_tertile_with_the_log_rank_test(tmp_path):
    from pipeline.modeling.metrics import survival_metrics

    rng = np.random.default_rng(4)
    hazard = rng.normal(size=300)
    days = rng.exponential(400 * np.exp(-hazard))
    event = days < 700
    days = np.minimum(days, 700)
    probability = 1 - np.exp(-np.exp(hazard) * 0.5)
    metrics = survival_metrics(days, event, hazard, probability, 365, resamples=10)
    groups = metrics["risk_groups"]
    assert list(groups["groups"]) == ["low", "medium", "high"] and groups["log_rank_p"] < 1e-3
    assert groups["groups"]["high"]["surviving"][-1] < groups["groups"]["low"]["surviving"][-1]
    report = {"title": "GIST", "task": "survival", "training_as_of": "2026-01-29", "examples": 300, "positives": 200,
              "train": {"n": 1200}, "held_out": {"n": 300}, "patients_on_both_sides": 0, "selected": "cox",
              "promote_metric": "c_index", "candidates": {"cox": metrics}}
    known = (event & (days <= 365)) | (days > 365)
    page = write_report_html(report, {"cox": ((event & (days <= 365))[known].astype(int), probability[known])}, {}, 0.3,
                             10.0, tmp_path, "s").read_text()
    assert "Kaplan-Meier by predicted risk tertile (cox)" in page and f"p = {groups['log_rank_p']:g}" in page
    assert (tmp_path / "s" / "kaplan-meier.png").stat().st_size > 5000
