"""Alerts an on-call engineer can trust: a task whose first try fails raises one warning (its
later retries none), a task out of retries one critical alert (both through a real `airflow dags test` run with Vigil's
own callbacks), and a night's condition is alerted when it starts, not every night it holds."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from datetime import date, datetime, timedelta
from pathlib import Path

from pipeline.alerts import alert_night
from tests.test_monitoring import webhook  # noqa: F401 - the fixture: a local HTTP receiver of the alerts

PROBE_DAG = '''
import pendulum
from datetime import timedelta
from airflow.sdk import dag, get_current_context, task
from pipeline.dag_defaults import alert_on_failure, alert_on_retry


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
     default_args={"retries": 2, "retry_delay": timedelta(seconds=1), "on_retry_callback": alert_on_retry,
                   "on_failure_callback": alert_on_failure})
def alert_probe():
    @task
    def flaky(fail_tries: int):
        if get_current_context()["ti"].try_number <= fail_tries:
            raise RuntimeError(f"try {get_current_context()['ti'].try_number} failed")
        return "ok"

    flaky.override(task_id="recovers")(1)
    flaky.override(task_id="gives_up")(3)


alert_probe()
'''


def _dags_test(tmp_path: Path, webhook_url: str) -> subprocess.CompletedProcess:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "alert_probe.py").write_text(textwrap.dedent(PROBE_DAG))
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "VIGIL_HOME": str(tmp_path / "home"),
           "VIGIL_ALERT_WEBHOOK": webhook_url,
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"}
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return subprocess.run([airflow, "dags", "test", "alert_probe", "2026-01-02"], env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_retry_that_recovers_warns_once_and_a_task_out_of_retries_is_critical(tmp_path, webhook):  # noqa: F811
    url, received = webhook
    result = _dags_test(tmp_path, url)
    assert "state=failed" in result.stdout + result.stderr  # gives_up fails the run
    alerts = [(body["level"], body["details"]["task_id"], body["details"]["try_number"]) for _, body in received]
    assert sorted(a for a in alerts if a[1] == "recovers") == [("warning", "recovers", 1)]
    assert sorted(a for a in alerts if a[1] == "gives_up") == [("critical", "gives_up", 3), ("warning", "gives_up", 1)]
    warning = next(body for _, body in received if body["details"]["task_id"] == "recovers")
    assert warning["text"].startswith("Vigil: task failed, retrying: alert_probe.recovers")
    assert warning["details"]["error"] == "RuntimeError: try 1 failed" and warning["details"]["log_url"]
    critical = next(body for _, body in received if body["level"] == "critical")
    assert critical["text"].startswith("Vigil CRITICAL: task failed: alert_probe.gives_up")
    assert critical["details"]["error"] == "RuntimeError: try 3 failed" and critical["details"]["log_url"]


def _drift(version: str = "v1") -> tuple[str, dict]:
    return (f"drift: icu_mortality {version}", {"condition": f"drift:icu_mortality:{version}", "score_psi": 0.4})


def _published(warehouse, nights) -> None:
    """Audit rows for ``nights``: what makes a night the one published before the next."""
    import pandas as pd

    rows = pd.DataFrame([{"run_id": f"run-{n}", "night": n, "prediction_time": datetime.combine(n, datetime.min.time()),
                          "started_at": datetime(2026, 1, 1), "published_at": datetime(2026, 1, 1),
                          "status": "published", "stays_active": 1, "stays_scored": 1, "risk_rows": 1,
                          "risk_rows_sha256": "0" * 64, "models": "{}"} for n in nights])
    with warehouse.begin() as conn:
        warehouse.bulk_insert(conn, "vigil_audit.runs", rows)


def test_a_condition_lasting_three_nights_alerts_once_and_again_when_it_returns(warehouse, settings, webhook):  # noqa: F811
    """Drift through three published nights is one alert; a report re-run sends nothing twice; a
    night skipped by the schedule does not restart the condition; cleared then back, it alerts again."""
    url, received = webhook
    settings = dataclasses.replace(settings, alert_webhook=url)
    first = date(2026, 1, 1)
    nights = [first, first + timedelta(days=1), first + timedelta(days=3), first + timedelta(days=4),
              first + timedelta(days=5)]  # no night 2026-01-03: it never ran
    _published(warehouse, nights)
    sent = [alert_night(warehouse, settings, n, [_drift()]) for n in nights[:3]]
    assert [len(s) for s in sent] == [1, 0, 0] and len(received) == 1
    assert alert_night(warehouse, settings, first, [_drift()]) == []  # the first night's report re-run
    assert alert_night(warehouse, settings, nights[3], []) == []  # the condition cleared
    returned = alert_night(warehouse, settings, nights[4], [_drift(), _drift("v2")])
    assert [d["condition"] for _, d in returned] == ["drift:icu_mortality:v1", "drift:icu_mortality:v2"]
    assert [body["details"]["condition"] for _, body in received] == [
        "drift:icu_mortality:v1", "drift:icu_mortality:v1", "drift:icu_mortality:v2"]
    started = warehouse.read("SELECT night, condition_key FROM vigil_audit.alerts WHERE started = :y", {"y": True})
    assert len(started) == 3


def test_an_alert_no_channel_took_is_sent_again_by_the_next_report(warehouse, settings, webhook):  # noqa: F811
    """The webhook is down on the night a condition starts: the alert is logged but not recorded
    as sent, so the report's re-run (or the next night) sends it once the webhook is back."""
    url, received = webhook
    night = date(2026, 2, 1)
    _published(warehouse, [night, night + timedelta(days=1)])
    down = dataclasses.replace(settings, alert_webhook="http://127.0.0.1:1/down")
    assert len(alert_night(warehouse, down, night, [_drift()])) == 1 and received == []
    up = dataclasses.replace(settings, alert_webhook=url)
    assert len(alert_night(warehouse, up, night, [_drift()])) == 1 and len(received) == 1  # the re-run delivers
    assert alert_night(warehouse, up, night + timedelta(days=1), [_drift()]) == []  # and then it holds
    assert len(received) == 1
