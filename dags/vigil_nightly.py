"""
### Vigil — nightly cohort risk scoring

Night D scores every ICU patient at midnight UTC after D with each promoted model whose cohort
enrols them, and publishes the risk table in one transaction: `extract` (incremental) → `validate`
(great-expectations; quarantine with reasons) → `features` and one embedding task per modality
(**gpu** queue and pool, CPU fallback; a failing modality does not stop the others) → `models` →
`score` (mapped: one task per promoted model) → `publish` → `report`. Stages exchange Parquet files
in `$VIGIL_HOME/runs/<D>/<run>/`; a re-run replaces the night's rows. Logic: `pipeline/nightly.py`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable


def _alert_on_failure(context) -> None:
    from pipeline.alerts import task_failure_callback
    task_failure_callback(context)


def _cron() -> str | None:
    from pipeline.config import nightly_schedule  # VIGIL_NIGHTLY_SCHEDULE; imports nothing heavy
    return nightly_schedule()


def _run() -> dict:
    """The night this DAG run scores, and its id: its tasks share a run folder no other run touches."""
    from pipeline.nightly import night_for_run
    context = get_current_context()
    return {"night": night_for_run(context.get("logical_date"), context["dag_run"].run_after).isoformat(),
            "run_id": context["run_id"]}


@dag(
    schedule=CronDataIntervalTimetable(_cron(), timezone="UTC") if _cron() else None,
    start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),  # catchup is off: early only so historical nights can run
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2), "on_failure_callback": _alert_on_failure},
    doc_md=__doc__,
    tags=["vigil", "scoring"],
)
def vigil_nightly():
    @task
    def extract() -> dict:
        """New rows since each source table's watermark, as canonical frames."""
        from pipeline.nightly import extract_stage
        return extract_stage(**_run())

    @task
    def validate() -> dict:
        """Great-expectations suites; quarantine with reasons; fail above the failure-rate limit."""
        from pipeline.nightly import validate_stage
        return validate_stage(**_run())

    @task
    def features() -> dict:
        """Windowed lab/vital aggregates and static fields for every active stay."""
        from pipeline.nightly import features_stage
        return features_stage(**_run())

    @task(queue="gpu", pool="gpu")
    def embed(modality: str) -> dict:
        """One modality's embeddings (cached by content hash and encoder version), pooled per stay."""
        from pipeline.nightly import embed_stage
        return embed_stage(modality=modality, **_run())

    @task
    def models() -> list[str]:
        """The night's promoted models: a score task is mapped over each."""
        from pipeline.nightly import night_models
        return night_models(**_run())

    @task
    def score(model: str) -> dict:
        """One model's cohort of active stays through its promoted version: probability, band, factors."""
        from pipeline.nightly import score_stage
        return score_stage(model=model, **_run())

    @task
    def publish() -> dict:
        """One transaction: risk rows, audit, accounting, quarantine, watermarks."""
        from pipeline.nightly import publish_stage
        return publish_stage(**_run())

    @task
    def report() -> dict:
        """Accounting, quarantine reasons, score distribution; drift and performance; alerts."""
        from pipeline.nightly import report_stage
        return report_stage(**_run())

    validated = extract() >> validate()
    scored = score.expand(model=validated >> models())
    validated >> features() >> scored
    for modality in ("notes", "ecg", "images"):
        validated >> embed.override(task_id=f"embed_{modality}")(modality) >> scored
    scored >> publish() >> report()


vigil_nightly()
