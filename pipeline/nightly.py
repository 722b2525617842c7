"""One night, stage by stage, as the nightly DAG and ``vigil run`` both call it.

A night D scores every stay in the ICU at its prediction time, D + 1 day at 00:00 UTC (the end
of D's data interval). Stages (``pipeline/stages/``, one module each) hand over files in the
run's folder, ``<home>/runs/<D>/<run>/<stage>/`` (``pipeline.store.run_folder``), and return
only small summaries (what Airflow keeps in XCom). Nothing is visible in the warehouse until
``publish``; re-running any stage, or the whole night, gives the same result.
"""

from __future__ import annotations

import logging
from pipeline.config import Settings, load_settings
from pipeline.stages.context import as_night
from pipeline.stages.embed import embed_stage
from pipeline.stages.extract import extract_stage
from pipeline.stages.features import features_stage
from pipeline.stages.publish import publish_stage
from pipeline.stages.report import report_stage
from pipeline.stages.score import score_stage
from pipeline.stages.validate import validate_stage

log = logging.getLogger(__name__)

STAGES = ("extract", "validate", "features", "embed", "score", "publish", "report")


STAGE_FUNCTIONS = {
    "extract": extract_stage, "validate": validate_stage, "features": features_stage, "embed": embed_stage,
    "score": score_stage, "publish": publish_stage, "report": report_stage,
}


def run_night(night, settings: Settings | None = None, run_id: str | None = None, stages=STAGES) -> dict:
    """Every stage of one night in order, as the DAG runs them (no scheduler needed)."""
    settings = settings or load_settings()
    results = {}
    for stage in stages:
        log.info("night %s: %s", as_night(night), stage)
        results[stage] = STAGE_FUNCTIONS[stage](night, settings, run_id=run_id)
        if stage == "extract":
            run_id = results[stage]["run_id"]  # the later stages work in this run's folder
    return results
