"""Operational alerts: a task that failed (a warning while it will be retried, critical when it
will not), a data-quality breach, drift. Each is logged, then posted to the configured webhook
(JSON: Slack/Teams/Mattermost-compatible ``text`` plus the level and details) and/or e-mailed.
Delivery problems are logged, never raised: an alert must not fail a night. A night's
conditions are alerted when they start, not every night they hold (``vigil_audit.alerts``
remembers them). Alerts carry counts, names and links only, never patient data."""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from email.message import EmailMessage

from pipeline.config import Settings, load_settings

log = logging.getLogger("vigil.alerts")


LEVELS = {"warning": logging.WARNING, "critical": logging.CRITICAL}


def send_alert(settings: Settings, title: str, details: dict, level: str = "warning") -> list[str]:
    """Log the alert and deliver it; returns the channels it reached (``log``, ``webhook``, ``email``)."""
    log.log(LEVELS[level], "ALERT %s %s", title, json.dumps(details, default=str, sort_keys=True))
    reached = ["log"]
    prefix = "Vigil: " if level == "warning" else "Vigil CRITICAL: "
    if settings.alert_webhook:
        body = json.dumps({"text": f"{prefix}{title}", "title": title, "level": level, "details": details},
                          default=str).encode()
        request = urllib.request.Request(settings.alert_webhook, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
            reached.append("webhook")
        except OSError as error:
            log.error("alert webhook unreachable (%s): %s", type(error).__name__, error)
    if settings.alert_email:
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = f"{prefix}{title}", settings.alert_email_from, \
            settings.alert_email
        message.set_content(json.dumps(details, default=str, indent=2, sort_keys=True))
        try:
            with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
                smtp.send_message(message)
            reached.append("email")
        except (OSError, smtplib.SMTPException) as error:
            log.error("alert e-mail not sent (%s): %s", type(error).__name__, error)
    return reached


def night_alerts(report: dict, settings: Settings) -> list[tuple[str, dict]]:
    """The alerts a night's report calls for: a table whose quarantined share passes
    ``VIGIL_ALERT_QUARANTINE_SHARE``, and a model whose score or features drift past
    ``VIGIL_ALERT_PSI``."""
    alerts = []
    for row in report["accounting"]:
        share = row["quarantined"] / row["records_in"] if row["records_in"] else 0.0
        if share > settings.alert_quarantine_share:
            alerts.append((f"data quality: {share:.1%} of {row['source_table']} quarantined on {report['night']}",
                           {"condition": f"data_quality:{row['source_table']}", "night": report["night"],
                            "table": row["source_table"], "records_in": row["records_in"],
                            "quarantined": row["quarantined"], "limit": settings.alert_quarantine_share}))
    for name, model in report["models"].items():
        drifted = {f: v for f, v in model.get("feature_psi_top", {}).items() if v > settings.alert_psi}
        score = model.get("score_psi_vs_training")
        if drifted or (score is not None and score > settings.alert_psi):
            alerts.append((f"drift: {name} {model['version']} on {report['night']}",
                           {"condition": f"drift:{name}:{model['version']}", "night": report["night"], "model": name,
                            "version": model["version"], "score_psi": score, "features_over_limit": drifted,
                            "limit": settings.alert_psi}))
    return alerts


def starting_alerts(wh, night, alerts: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The alerts of ``night`` whose condition did not hold on the night published before it,
    and that were not already delivered for this night (a re-run of its report sends nothing
    twice). Nothing is recorded here: :func:`record_alerts` does, once delivery is known."""
    from pipeline.store import audit, runs

    held = audit.alert_conditions(wh, runs.published_before(wh, night)) | audit.alert_conditions(wh, night)
    return [(t, d) for t, d in alerts if d["condition"] not in held]


def record_alerts(wh, night, alerts: list[tuple[str, dict]], undelivered: set[str] = frozenset()) -> None:
    """Record ``night``'s conditions in ``vigil_audit.alerts``, replacing a re-run's, except those
    whose starting alert reached none of the configured channels: for them the night's report
    re-run, or the next night, alerts again (a webhook down for one night loses nothing)."""
    import pandas as pd

    from pipeline.store import audit, runs

    held = audit.alert_conditions(wh, runs.published_before(wh, night))
    kept = [(t, d) for t, d in alerts if d["condition"] not in undelivered]
    rows = pd.DataFrame({"night": night, "condition_key": [d["condition"] for _, d in kept],
                         "title": [t for t, _ in kept], "started": [d["condition"] not in held for _, d in kept]},
                        columns=["night", "condition_key", "title", "started"])
    audit.replace_alerts(wh, night, rows)


def alert_night(wh, settings: Settings, night, conditions: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Send the alerts of ``night``'s conditions that start tonight, then record the conditions;
    returns the alerts sent."""
    alerts = starting_alerts(wh, night, conditions)
    undelivered = {details["condition"] for title, details in alerts
                   if not delivered(settings, send_alert(settings, title, details))}
    record_alerts(wh, night, conditions, undelivered)
    return alerts


def delivered(settings: Settings, reached: list[str]) -> bool:
    """Whether an alert reached someone: one of the configured channels (the log when none is)."""
    wanted = ({"webhook"} if settings.alert_webhook else set()) | ({"email"} if settings.alert_email else set())
    return bool(wanted & set(reached)) if wanted else "log" in reached


def _task_details(context) -> tuple[str, dict]:
    ti = context.get("task_instance") or context.get("ti")
    exception = context.get("exception")
    return f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')}", {
        "dag_id": getattr(ti, "dag_id", None), "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id"),
        "try_number": getattr(ti, "try_number", None), "error": f"{type(exception).__name__}: {exception}"
        if exception else None, "log_url": getattr(ti, "log_url", None),
    }


def task_failure_callback(context) -> None:
    """Airflow ``on_failure_callback`` (no retry left): critical, with the error and the log link."""
    task, details = _task_details(context)
    send_alert(load_settings(), f"task failed: {task}", details, level="critical")


def _first_try(context) -> bool:
    """Whether the failed try is the first of its task's tries since it was last scheduled or
    cleared (Airflow's own rule: ``max_tries - retries + 1``)."""
    ti, task = context.get("task_instance") or context.get("ti"), context.get("task")
    try:
        return int(ti.try_number) <= int(ti.max_tries) - int(task.retries or 0) + 1
    except (AttributeError, TypeError, ValueError):
        return True  # no way to tell: warn rather than stay silent


def task_retry_callback(context) -> None:
    """Airflow ``on_retry_callback``: a warning, with the error and the log link, when a task's
    first try fails and it will be retried (a night that recovers on its own still tells someone
    it needed to). Its later retries only log; if they run out, the failure callback is critical."""
    task, details = _task_details(context)
    if not _first_try(context):
        log.info("task %s failed again on try %s; it will be retried", task, details["try_number"])
        return
    send_alert(load_settings(), f"task failed, retrying: {task}", details, level="warning")
