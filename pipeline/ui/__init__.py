"""The Vigil page in the Airflow UI: its numbers (:mod:`pipeline.ui.numbers`, read through the
store layer into the plain values of :mod:`pipeline.ui.views`) and its HTML
(:mod:`pipeline.ui.render`, Jinja2 templates in ``templates/``). The Airflow plugin
(``plugins/vigil_plugin.py``) only wires these functions to routes behind Airflow's
authentication; nothing here imports Airflow."""

from pipeline.ui.numbers import (data_quality, last_runs, model_versions, overview, report_path, score_drift,
                                 score_histograms, to_json)
from pipeline.ui.render import render_markdown, render_message, render_page, render_report_page
from pipeline.ui.views import (HISTOGRAM_BINS, PSI_SHIFT, PSI_WATCH, DataQuality, ModelDrift, ModelVersion, Overview, RunSummary,
                               ScoreHistogram)

__all__ = ["HISTOGRAM_BINS", "PSI_SHIFT", "PSI_WATCH", "DataQuality", "ModelDrift", "ModelVersion", "Overview", "RunSummary",
           "ScoreHistogram", "data_quality", "last_runs", "model_versions", "overview", "render_markdown",
           "render_message", "render_page", "render_report_page", "report_path", "score_drift", "score_histograms",
           "to_json"]
