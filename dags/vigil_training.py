"""
### Vigil — model training

Fits every model spec in `models/` (one mapped task per spec) on the outcomes known by the
run's logical date, compares the candidates on held-out patients, registers every version and
marks the best *selected*. Promotion is explicit: trigger with `{"promote": true}` to promote
each selected version, or run `vigil promote <model>` after reading the reports. The nightly
DAG scores with the promoted versions from its next run. Training tasks run in the `training`
pool at low priority, so a night started meanwhile is never short of slots. Logic lives in
`pipeline/modeling/train.py`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task


def _wiring() -> dict:
    from pipeline.dag_defaults import training  # the training pool, low priority, alerts: nothing heavy
    return training()


@dag(
    **_wiring(),
    start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),  # catchup is off: early only so historical nights can run
    catchup=False,
    doc_md=__doc__,
    params={"promote": Param(False, type="boolean", description="promote each spec's selected version")},
    tags=["vigil", "training"],
)
def vigil_training():
    @task
    def model_specs() -> list[str]:
        """The spec names in models/ (each is trained by its own mapped task)."""
        from pipeline.config import load_settings
        from pipeline.modeling.spec import load_specs

        return [spec.name for spec in load_specs(load_settings().models_dir)]

    @task
    def train(spec_name: str) -> dict:
        """Fit, evaluate, register and promote one model spec."""
        from pipeline.modeling.train import as_of_for_run, train_named_spec

        context = get_current_context()
        report = train_named_spec(spec_name, as_of_for_run(context.get("logical_date"), context["dag_run"].run_after),
                                  promote=bool(context["params"]["promote"]))
        return {"model": report["model"], "selected": report["selected"], "promoted": report["promoted_version"],
                "metric": {name: m.get(report["promote_metric"]) for name, m in report["candidates"].items()}}

    train.expand(spec_name=model_specs())


vigil_training()
