"""Monitoring and alerts: feature / score drift (PSI), performance once outcomes arrive, and
alert delivery to a real local webhook."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.alerts import night_alerts, send_alert, task_failure_callback
from pipeline.config import load_settings
from pipeline.modeling.metrics import calibration
from pipeline.monitoring import feature_drift, performance, reference_quantiles


def test_feature_drift_flags_the_shifted_feature_only():
    rng = np.random.default_rng(0)
    training = pd.DataFrame({"lactate": rng.lognormal(0.5, 0.4, 5000), "age": rng.normal(65, 12, 5000),
                             "sex": rng.choice(["F", "M"], 5000)})
    reference = reference_quantiles(training)
    assert set(reference) == {"lactate", "age"} and len(reference["age"]) == 11
    tonight = pd.DataFrame({"lactate": rng.lognormal(1.2, 0.4, 800), "age": rng.normal(65, 12, 800)})
    drift = feature_drift(reference, tonight)
    assert drift["lactate"] > 0.25 and drift["age"] < 0.1
    assert feature_drift(reference, tonight[["age"]]).keys() == {"age"}  # a feature absent tonight is skipped


def test_performance_per_scored_night_with_outcomes_that_arrived_later():
    rng = np.random.default_rng(1)
    n = 4000
    p = rng.uniform(0.02, 0.6, n)
    y = (rng.uniform(size=n) < p).astype(int)
    scores = pd.DataFrame({"night": np.where(np.arange(n) < n // 2, "2026-01-01", "2026-01-02"),
                           "stay_id": np.arange(n), "model_name": "m", "model_version": "v1", "probability": p})
    known = np.arange(n)[rng.uniform(size=n) < 0.7]  # outcomes not yet known for the rest
    labels = pd.DataFrame({"stay_id": known, "label": y[known]})
    result = performance(scores, labels).set_index("scored_night")
    assert result["labelled"].sum() == len(known)
    first = known[known < n // 2]
    assert result.loc["2026-01-01", "auroc"] == pytest.approx(roc_auc_score(y[first], p[first]), abs=1e-4)
    assert result["calibration_slope"].between(0.8, 1.2).all()  # calibrated by construction
    overconfident = 1 / (1 + np.exp(-3 * np.log(p / (1 - p))))
    assert calibration(y, overconfident)["slope"] < 0.5
    one_class = performance(scores.assign(stay_id=np.arange(n)), pd.DataFrame({"stay_id": [0, 1], "label": [0, 0]}))
    assert one_class["auroc"].isna().all() and one_class["calibration_slope"].isna().all()


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Receiver.received = []
    yield f"http://127.0.0.1:{server.server_port}/hook", _Receiver.received
    server.shutdown()


def test_alerts_reach_the_webhook_and_a_dead_channel_never_raises(webhook, tmp_path, monkeypatch):
    url, received = webhook
    settings = load_settings({"VIGIL_HOME": str(tmp_path), "VIGIL_ALERT_WEBHOOK": url,
                              "VIGIL_ALERT_EMAIL": "icu-ops@example.org", "VIGIL_SMTP_PORT": "1"})
    reached = send_alert(settings, "drift: icu_mortality", {"score_psi": 0.4})
    assert reached == ["log", "webhook"]  # nothing listens on SMTP port 1: logged, not raised
    content_type, body = received[0]
    assert content_type == "application/json" and body["text"] == "Vigil: drift: icu_mortality"
    assert body["details"] == {"score_psi": 0.4}
    dead = load_settings({"VIGIL_HOME": str(tmp_path), "VIGIL_ALERT_WEBHOOK": "http://127.0.0.1:1/none"})
    assert send_alert(dead, "x", {}) == ["log"]

    monkeypatch.setenv("VIGIL_HOME", str(tmp_path))
    monkeypatch.setenv("VIGIL_ALERT_WEBHOOK", url)
    task = SimpleNamespace(dag_id="vigil_nightly", task_id="embed_ecg", run_id="scheduled__2026-01-02",
                           try_number=3, log_url="http://airflow/log")
    task_failure_callback({"task_instance": task, "exception": RuntimeError("decoder crashed")})
    details = received[-1][1]["details"]
    assert details["task_id"] == "embed_ecg" and details["error"] == "RuntimeError: decoder crashed"
    assert details["log_url"] == "http://airflow/log"


def test_a_night_report_calls_for_data_quality_and_drift_alerts(tmp_path):
    settings = load_settings({"VIGIL_HOME": str(tmp_path)})
    report = {"night": "2026-01-02",
              "accounting": [{"source_table": "events", "records_in": 1000, "quarantined": 80},
                             {"source_table": "notes", "records_in": 50, "quarantined": 1}],
              "models": {"icu_mortality": {"version": "v1", "score_psi_vs_training": 0.05,
                                           "feature_psi_top": {"lab_lactate__max_24h": 0.6, "age": 0.01}},
                         "other": {"version": "v2", "score_psi_vs_training": 0.02, "feature_psi_top": {}}}}
    titles = [title for title, _ in night_alerts(report, settings)]
    assert titles == ["data quality: 8.0% of events quarantined on 2026-01-02",
                      "drift: icu_mortality v1 on 2026-01-02"]
    details = dict(night_alerts(report, settings))["drift: icu_mortality v1 on 2026-01-02"]
    assert details["features_over_limit"] == {"lab_lactate__max_24h": 0.6}
