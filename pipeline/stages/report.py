"""Stage 7, report: accounting, quarantine reasons, score distribution, drift and performance,
and the alerts they call for."""

from __future__ import annotations

import logging

import pandas as pd

from pipeline import monitoring
from pipeline.alerts import alert_night, night_alerts
from pipeline.config import Settings
from pipeline.modeling import registry
from pipeline.modeling.inputs import tabular_frame
from pipeline.modeling.spec import parse_spec
from pipeline.report import night_report
from pipeline.stages.context import NightNotPublished, night_context, read_shards
from pipeline.store import audit, runs
from pipeline.store import risk as risk_table

log = logging.getLogger(__name__)


def report_stage(night, settings: Settings | None = None, run_id: str | None = None) -> dict:
    """The night's report (``report/report.json``), its monitoring rows (``vigil_audit.drift`` and
    ``vigil_audit.performance``, replaced on a re-run) and the alerts it calls for."""
    ctx, wh = night_context(night, settings, run_id)
    manifest = ctx.manifest()
    if not runs.is_published(wh, ctx.night):
        raise NightNotPublished(f"night {ctx.night} has no published run: nothing to report (its publish "
                                f"failed or has not run)")
    risk = risk_table.night(wh, ctx.night)
    counts = audit.night_counts(wh, ctx.night)
    quarantine = audit.night_quarantine(wh, ctx.night)
    thresholds, reference, drift, performance = {}, {}, [], []
    for name, info in manifest["models"].items():
        bundle = registry.load_bundle(info["artifact_uri"], ctx.settings.home)
        spec = parse_spec(bundle.spec_raw, name)
        thresholds[name] = spec.operating_threshold
        reference[name] = bundle.training.get("held_out_probabilities", [])
        features = tabular_frame(spec, read_shards(ctx, "features", name))
        psis = monitoring.feature_drift(bundle.training.get("feature_reference", {}), features)
        drift.append(pd.DataFrame({"model_name": name, "model_version": bundle.version,
                                   "feature": list(psis), "psi": list(psis.values())}))
        if spec.label_kind != "event_within":  # event windows: not yet
            performance.append(monitoring.scored_performance(wh, spec, name, ctx.night, ctx.prediction_time,
                                                             ctx.settings.monitoring_lookback_days))
    report = {"night": ctx.night.isoformat(), "run_id": manifest["run_id"],
              **night_report(risk, counts, quarantine, thresholds, reference)}
    drift = pd.concat(drift, ignore_index=True)
    for name, model in report["models"].items():
        mine = drift[drift["model_name"] == name].sort_values("psi", ascending=False)
        model["feature_psi_top"] = dict(zip(mine["feature"].head(5), mine["psi"].head(5)))
        model["features_drifted"] = int((mine["psi"] > ctx.settings.alert_psi).sum())
        if model["score_psi_vs_training"] is not None:
            drift.loc[len(drift)] = {"model_name": name, "model_version": model["version"], "feature": "score",
                                     "psi": model["score_psi_vs_training"]}
    performance = pd.concat(performance, ignore_index=True) if performance else pd.DataFrame()
    report["performance"] = performance.to_dict(orient="records")
    audit.replace_monitoring(wh, ctx.night, drift, performance)
    path = ctx.write_json("report", "report.json", report)
    for row in report["accounting"]:
        log.info("%(source_table)s: %(records_in)d in = %(used)d used + %(quarantined)d quarantined + "
                 "%(excluded)d excluded", row)
    for name, model in report["models"].items():
        log.info("%s %s: %d stays scored, %d alerts at %.2f, score PSI vs training %s, %d features drifted",
                 name, model["version"], model["stays_scored"], model["alerts_at_threshold"],
                 model["operating_threshold"], model["score_psi_vs_training"], model["features_drifted"])
    alerts = alert_night(wh, ctx.settings, ctx.night, night_alerts(report, ctx.settings))
    return {"report": str(path), "models": list(report["models"]),
            "alerts": len(alerts)}
