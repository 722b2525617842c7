"""What the DAG files take from Vigil when Airflow parses them: schedule, retries, priorities,
pools and the alert notifiers, from ``pipeline.config``. Nothing heavy is imported here: the
DAG processor parses the files every few seconds.

Nightly tasks run at ``NIGHTLY_PRIORITY`` (absolute), training tasks at 1 in the ``training``
pool, so a training run beside a night never takes the slots the night needs; a failed try
that will be retried raises a warning, the last one a critical alert.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk.bases.notifier import BaseNotifier

from pipeline.config import GPU_QUEUE, NIGHTLY_PRIORITY, TRAINING_POOL, nightly_schedule, task_retries


class TaskAlert(BaseNotifier):
    """A task's failed try as a Vigil alert, through Airflow's notifier interface: ``critical``
    when no retry is left (``on_failure_callback``), ``warning`` for the first failed try of a
    task that will be retried (``on_retry_callback``); delivery is :mod:`pipeline.alerts`'."""

    def __init__(self, level: str):
        super().__init__()
        self.level = level

    def notify(self, context) -> None:
        from pipeline.alerts import task_failure_callback, task_retry_callback
        (task_failure_callback if self.level == "critical" else task_retry_callback)(context)


alert_on_failure = TaskAlert("critical")
alert_on_retry = TaskAlert("warning")


def nightly() -> dict:
    """``@dag`` arguments of ``vigil_nightly``."""
    from airflow.timetables.interval import CronDataIntervalTimetable

    cron = nightly_schedule()
    return {"schedule": CronDataIntervalTimetable(cron, timezone="UTC") if cron else None,
            "default_args": {**task_retries(), "on_retry_callback": alert_on_retry,
                             "on_failure_callback": alert_on_failure, "priority_weight": NIGHTLY_PRIORITY,
                             "weight_rule": "absolute"}}


def training() -> dict:
    """``@dag`` arguments of ``vigil_training``: no retries (a failed fit is read, not repeated)."""
    return {"schedule": None,
            "default_args": {"retries": 0, "execution_timeout": timedelta(hours=6),
                             "on_failure_callback": alert_on_failure, "priority_weight": 1,
                             "weight_rule": "absolute", "pool": TRAINING_POOL, "queue": GPU_QUEUE}}
