"""Operational alerts: a failed task, a data-quality breach, drift. Each is logged, then posted
to the configured webhook (JSON: Slack/Teams/Mattermost-compatible ``text`` plus the details)
and/or e-mailed. Delivery problems are logged, never raised: an alert must not fail a night.
Alerts carry counts, names and links only, never patient data."""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from email.message import EmailMessage

from pipeline.config import Settings, load_settings

log = logging.getLogger("vigil.alerts")


def send_alert(settings: Settings, title: str, details: dict) -> list[str]:
    """Log the alert and deliver it; returns the channels it reached (``log``, ``webhook``, ``email``)."""
    log.warning("ALERT %s %s", title, json.dumps(details, default=str, sort_keys=True))
    reached = ["log"]
    if settings.alert_webhook:
        body = json.dumps({"text": f"Vigil: {title}", "title": title, "details": details}, default=str).encode()
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
        message["Subject"], message["From"], message["To"] = f"Vigil: {title}", settings.alert_email_from, \
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
                           {"night": report["night"], "table": row["source_table"], "records_in": row["records_in"],
                            "quarantined": row["quarantined"], "limit": settings.alert_quarantine_share}))
    for name, model in report["models"].items():
        drifted = {f: v for f, v in model.get("feature_psi_top", {}).items() if v > settings.alert_psi}
        score = model.get("score_psi_vs_training")
        if drifted or (score is not None and score > settings.alert_psi):
            alerts.append((f"drift: {name} {model['version']} on {report['night']}",
                           {"night": report["night"], "model": name, "version": model["version"], "score_psi": score,
                            "features_over_limit": drifted, "limit": settings.alert_psi}))
    return alerts


def task_failure_callback(context) -> None:
    """Airflow ``on_failure_callback``: which task of which run failed, why, and where its log is."""
    ti = context.get("task_instance") or context.get("ti")
    exception = context.get("exception")
    send_alert(load_settings(), f"task failed: {getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')}", {
        "dag_id": getattr(ti, "dag_id", None), "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id"),
        "try_number": getattr(ti, "try_number", None), "error": f"{type(exception).__name__}: {exception}"
        if exception else None, "log_url": getattr(ti, "log_url", None),
    })
