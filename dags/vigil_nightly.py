"""
### Vigil — nightly cohort risk scoring

Night D scores every ICU patient at midnight UTC after D with each promoted model enrolling them:
`extract` → `validate` (great-expectations; quarantine with reasons) → `shards` (active stays in
`VIGIL_SHARDS` ranges) → `features` and an embedding task per modality (**gpu** queue and pool),
mapped over the shards → `score` (per model and shard) → `publish` (all shards in one transaction)
→ `report`. A failed shard retries alone; a re-run replaces the night's rows. `begin`/`report` are
setup/teardown: a cleared task re-runs the report. Logic: `pipeline/stages/`, one module per stage.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, setup, task
from airflow.sdk.exceptions import AirflowSkipException


def _wiring() -> dict:
    from pipeline.dag_defaults import nightly  # schedule, retries, priority, alerts: nothing heavy
    return nightly()


def _run() -> dict:  # the night this run scores, and its id: its tasks share a run folder
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
    def begin() -> str:  # the run's setup: the night it scores
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
    def shards() -> list[int]:  # the night's shards of active stays: features, embed, score map over them
        from pipeline.stages.context import night_shards
        return night_shards(**_run())

    @task
    def features(shard: int) -> dict:
        """Windowed lab/vital aggregates and static fields for every active stay of a shard."""
        from pipeline.stages.features import features_stage
        return features_stage(shard=shard, **_run())

    @task(queue="gpu", pool="gpu")
    def embed(modality: str, shard: int) -> dict:
        """One modality's embeddings of a shard's stays (cached by content hash and encoder version)."""
        from pipeline.stages.embed import embed_stage
        return embed_stage(modality=modality, shard=shard, **_run())

    @task
    def models() -> list[str]:  # the night's promoted models: score maps over them
        from pipeline.stages.score import night_models
        return night_models(**_run())

    @task
    def score(model: str, shard: int) -> dict:
        """A shard's stays in one model's cohort, scored: probability, band, factors."""
        from pipeline.stages.score import score_stage
        return score_stage(model=model, shard=shard, **_run())

    @task
    def publish() -> dict:
        """One transaction: risk rows, audit, accounting, quarantine, watermarks."""
        from pipeline.stages.publish import publish_stage
        return publish_stage(**_run())

    @task
    def report() -> dict:
        """Accounting, quarantine, scores, drift, performance, alerts (skipped if nothing was published)."""
        from pipeline.stages.report import NightNotPublished, report_stage
        try:
            return report_stage(**_run())
        except NightNotPublished as unpublished:
            raise AirflowSkipException(str(unpublished)) from unpublished

    begun = begin()
    validated = begun >> extract() >> validate()
    cut = validated >> shards()
    scored = score.expand(model=validated >> models(), shard=cut)  # every (model, shard) pair
    features.expand(shard=cut) >> scored
    from pipeline.modality import Modality  # no dependencies: an embedding task per record modality
    for modality in (m.value for m in Modality):
        embed.override(task_id=f"embed_{modality}").partial(modality=modality).expand(shard=cut) >> scored
    scored >> publish() >> report().as_teardown(setups=begun)


vigil_nightly()
