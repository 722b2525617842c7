"""
### Vigil — nightly cohort risk scoring

Night D scores every ICU patient at midnight UTC after D with each promoted model whose cohort
enrols them, and publishes the risk table in one transaction: `extract` (incremental) → `validate`
(great-expectations; quarantine with reasons) → `features` and one embedding task per modality
(**gpu** queue and pool, CPU fallback; a failing modality does not stop the others) → `models` →
`score` (mapped: one task per promoted model) → `publish` → `report`. Stages exchange Parquet files
in `$VIGIL_HOME/runs/<D>/<run>/`; a re-run replaces the night's rows. `begin` and `report` are the
run's setup and teardown: clearing any task re-runs the report after it, and the run's state is that
of its work (a failed `publish` fails the run). Logic: `pipeline/stages/`, one module per stage.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, setup, task
from airflow.sdk.exceptions import AirflowSkipException


def _wiring() -> dict:
    from pipeline.dag_defaults import nightly  # schedule, retries, priority, alerts: nothing heavy
    return nightly()


def _run() -> dict:
    """The night this DAG run scores, and its id: its tasks share a run folder no other run touches."""
    from pipeline.stages.context import night_for_run
    context = get_current_context()
    return {"night": night_for_run(context.get("logical_date"), context["dag_run"].run_after).isoformat(),
            "run_id": context["run_id"]}


@dag(
    **_wiring(),
    start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),  # catchup is off: early only so historical nights can run
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["vigil", "scoring"],
)
def vigil_nightly():
    @setup
    def begin() -> str:
        """The run's setup: the night it scores."""
        return _run()["night"]

    @task
    def extract() -> dict:
        """New rows since each source table's watermark, as canonical frames."""
        from pipeline.stages.extract import extract_stage
        return extract_stage(**_run())

    @task
    def validate() -> dict:
        """Great-expectations suites; quarantine with reasons; fail above the failure-rate limit."""
        from pipeline.stages.validate import validate_stage
        return validate_stage(**_run())

    @task
    def features() -> dict:
        """Windowed lab/vital aggregates and static fields for every active stay."""
        from pipeline.stages.features import features_stage
        return features_stage(**_run())

    @task(queue="gpu", pool="gpu")
    def embed(modality: str) -> dict:
        """One modality's embeddings (cached by content hash and encoder version), pooled per stay."""
        from pipeline.stages.embed import embed_stage
        return embed_stage(modality=modality, **_run())

    @task
    def models() -> list[str]:
        """The night's promoted models: a score task is mapped over each."""
        from pipeline.stages.score import night_models
        return night_models(**_run())

    @task
    def score(model: str) -> dict:
        """One model's cohort of active stays through its promoted version: probability, band, factors."""
        from pipeline.stages.score import score_stage
        return score_stage(model=model, **_run())

    @task
    def publish() -> dict:
        """One transaction: risk rows, audit, accounting, quarantine, watermarks."""
        from pipeline.stages.publish import publish_stage
        return publish_stage(**_run())

    @task
    def report() -> dict:
        """Accounting, quarantine reasons, score distribution; drift and performance; alerts (skipped
        when no run has published the night)."""
        from pipeline.stages.report import NightNotPublished, report_stage
        try:
            return report_stage(**_run())
        except NightNotPublished as unpublished:
            raise AirflowSkipException(str(unpublished)) from unpublished

    begun = begin()
    validated = begun >> extract() >> validate()
    scored = score.expand(model=validated >> models())
    validated >> features() >> scored
    from pipeline.modality import Modality  # no dependencies: an embedding task per record modality
    for modality in (m.value for m in Modality):
        validated >> embed.override(task_id=f"embed_{modality}")(modality) >> scored
    scored >> publish() >> report().as_teardown(setups=begun)


vigil_nightly()
