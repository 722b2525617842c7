"""The numbers behind the Vigil page, read through the store layer (so the same code runs on
PostgreSQL and on the embedded SQLite files) and returned as the plain values of
:mod:`pipeline.ui.views`. Nothing here imports Airflow, and nothing identifies a patient: counts,
rates, score distributions, drift figures and model metadata."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.frames import SOURCE_TABLES
from pipeline.store import audit, registry
from pipeline.store import risk as risk_table
from pipeline.store import runs as stored_runs
from pipeline.store.warehouse import Warehouse
from pipeline.ui.views import (HISTOGRAM_BINS, PSI_SHIFT, DataQuality, DriftNight, ExpectationRate, ModelDrift,
                               ModelVersion, Overview, RunSummary, ScoreHistogram, TableCount, TableQuality)


def _day(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _time(value) -> datetime | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    stamp = pd.Timestamp(value)
    return None if pd.isna(stamp) else stamp.to_pydatetime()


def _json_object(text) -> dict:
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def last_runs(wh: Warehouse, limit: int = 10) -> tuple[RunSummary, ...]:
    """The latest ``limit`` runs (newest first), each with its per-table row accounting."""
    runs = stored_runs.latest(wh, limit)
    if runs.empty:
        return ()
    counts = stored_runs.counts_of_runs(wh, runs["run_id"].tolist())
    by_run: dict[str, list[TableCount]] = {}
    for row in counts.itertuples(index=False):
        by_run.setdefault(row.run_id, []).append(TableCount(
            str(row.source_table), int(row.records_in), int(row.used), int(row.quarantined), int(row.excluded)))
    return tuple(
        RunSummary(run_id=str(r.run_id), night=_day(r.night), prediction_time=_time(r.prediction_time),
                   started_at=_time(r.started_at), published_at=_time(r.published_at), status=str(r.status),
                   stays_active=int(r.stays_active), stays_scored=int(r.stays_scored),
                   stays_unscored=int(r.stays_unscored), risk_rows=int(r.risk_rows),
                   models={str(k): str(v) for k, v in _json_object(r.models).items()},
                   tables=tuple(sorted(by_run.get(r.run_id, []), key=lambda t: _table_order(t.source_table))))
        for r in runs.itertuples(index=False)
    )


_TABLES = SOURCE_TABLES


def _table_order(table: str) -> tuple[int, str]:
    return (_TABLES.index(table) if table in _TABLES else len(_TABLES), table)


def data_quality(wh: Warehouse, night: date | None = None, *,
                 limit_for: Callable[[str], float] | None = None,
                 runs: tuple[RunSummary, ...] | None = None) -> DataQuality:
    """Per table the quarantined share (against its limit) and per expectation the failure rate,
    for ``night`` (default: the latest night with data-quality results).

    The per-table figures come from the night's latest run in ``runs`` (default: read here)."""
    if night is None:
        found = audit.dq_last_night(wh)
        night = None if found is None or pd.isna(found) else _day(found)
    if night is None:
        return DataQuality(None, None, (), ())
    results = audit.dq_results(wh, night)
    expectations = [
        ExpectationRate(str(r.source_table), str(r.expectation), "" if r.column_name is None else str(r.column_name),
                        int(r.element_count), int(r.unexpected_count), bool(r.success))
        for r in results.itertuples(index=False)
    ]
    expectations.sort(key=lambda e: (e.success and not e.unexpected_count, -e.failure_rate,
                                     _table_order(e.source_table), e.expectation, e.column_name))
    runs = last_runs(wh, 50) if runs is None else runs
    run = next((r for r in runs if r.night == night), None)  # newest first: the night's latest run
    tables = tuple(
        TableQuality(t.source_table, t.used + t.quarantined, t.quarantined, t.failure_rate,
                     limit_for(t.source_table) if limit_for else None)
        for t in (run.tables if run else ())
    )
    return DataQuality(night, run.run_id if run else None, tables, tuple(expectations))


def score_histograms(wh: Warehouse, night: date | None = None, bins: int = HISTOGRAM_BINS) -> tuple[ScoreHistogram, ...]:
    """Per model, the night's probabilities in ``bins`` equal bins over [0, 1] (default: the latest night scored)."""
    if night is None:
        found = risk_table.last_night(wh)
        if found is None or pd.isna(found):
            return ()
        night = _day(found)
    risk = risk_table.night_distribution(wh, night)
    edges = np.linspace(0.0, 1.0, bins + 1)
    histograms = []
    for model, rows in sorted(risk.groupby("model_name"), key=lambda item: item[0]):
        p = rows["probability"].to_numpy(dtype=float)
        counts, _ = np.histogram(np.clip(p, 0.0, 1.0), bins=edges)
        thresholds = rows["operating_threshold"].dropna()
        threshold = float(thresholds.iloc[0]) if len(thresholds) else None
        histograms.append(ScoreHistogram(
            model_name=str(model), model_versions=tuple(sorted(rows["model_version"].astype(str).unique())),
            night=night, edges=tuple(round(float(e), 6) for e in edges), counts=tuple(int(c) for c in counts),
            mean=float(p.mean()), median=float(np.median(p)), p90=float(np.quantile(p, 0.9)),
            operating_threshold=threshold, alerts=int((p >= threshold).sum()) if threshold is not None else None,
            bands={str(k): int(v) for k, v in rows["risk_band"].value_counts().sort_index().items()},
        ))
    return tuple(histograms)


def score_drift(wh: Warehouse, nights: int = 30, top: int = 5, limit: float = PSI_SHIFT) -> tuple[ModelDrift, ...] | None:
    """Per model and night of the last ``nights``: the score's PSI against training (feature
    ``'score'`` of ``vigil_audit.drift``) and how many input features passed ``limit``; plus the
    ``top`` most drifted inputs of the latest night. ``None`` when there are no drift figures yet."""
    recent = audit.drift_nights(wh, nights)
    if recent is None or recent.empty:
        return None
    first = min(_day(n) for n in recent["night"])
    drift = audit.drift_since(wh, first)
    drift["night"] = drift["night"].map(_day)
    result = []
    for model, rows in sorted(drift.groupby("model_name"), key=lambda item: item[0]):
        per_night = []
        for night, mine in sorted(rows.groupby("night"), key=lambda item: item[0]):
            score = mine.loc[mine["feature"] == "score", "psi"]
            features = mine[mine["feature"] != "score"]
            per_night.append(DriftNight(night, str(mine["model_version"].iloc[0]),
                                        float(score.iloc[0]) if len(score) else None,
                                        int(len(features)), int((features["psi"] > limit).sum())))
        latest = rows[(rows["night"] == per_night[-1].night) & (rows["feature"] != "score")]
        latest = latest.sort_values(["psi", "feature"], ascending=[False, True]).head(top)
        result.append(ModelDrift(str(model), tuple(per_night),
                                 tuple((str(f), float(p)) for f, p in zip(latest["feature"], latest["psi"])), limit))
    return tuple(result)


def model_versions(wh: Warehouse) -> tuple[ModelVersion, ...]:
    """Every registered version (newest first) with its held-out metrics and training report."""
    rows = registry.all_versions(wh)
    return tuple(
        ModelVersion(str(r.model_name), str(r.version), str(r.candidate), _time(r.trained_at),
                     _time(r.training_as_of), bool(r.promoted),
                     {k: v for k, v in _json_object(r.metrics_json).items() if isinstance(v, (int, float))},
                     None if r.report_uri is None or pd.isna(r.report_uri) else str(r.report_uri))
        for r in rows.itertuples(index=False)
    )


def overview(wh: Warehouse, *, runs: int = 10, drift_nights: int = 30, top_features: int = 5,
             limit_for: Callable[[str], float] | None = None, alert_psi: float = PSI_SHIFT) -> Overview:
    """Everything on the page: the last ``runs`` runs, the latest night's data quality and score
    distribution, score drift over the last ``drift_nights`` nights and the model registry."""
    recent = last_runs(wh, max(runs, 1))
    return Overview(
        generated_at=datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0),
        backend=wh.dialect,
        runs=recent,
        data_quality=data_quality(wh, limit_for=limit_for, runs=recent if len(recent) else None),
        histograms=score_histograms(wh),
        drift=score_drift(wh, drift_nights, top_features, alert_psi),
        models=model_versions(wh),
    )


def to_json(value) -> object:
    """Dataclasses, dates and tuples as JSON-ready values (for the page's JSON twin)."""
    if hasattr(value, "__dataclass_fields__"):
        out = {name: to_json(getattr(value, name)) for name in value.__dataclass_fields__}
        for name in ("closes", "failure_rate", "over_limit", "total", "quarantined", "excluded", "records_in"):
            if isinstance(getattr(type(value), name, None), property):
                out[name] = to_json(getattr(value, name))
        return out
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def report_path(wh: Warehouse, reports_root: Path, model_name: str, version: str) -> Path | None:
    """The Markdown training report of a registered version, or ``None``.

    The path comes from the registry (never from the request) and must lie inside
    ``reports_root`` (``$VIGIL_HOME/reports``) and end in ``.md``. A home moved since training
    (restored elsewhere, mounted at another path) keeps its reports at
    ``reports_root/<model>/<file>``, which is tried second.
    """
    uri = registry.report_uri(wh, model_name, version)
    if uri is None or pd.isna(uri):
        return None
    root = reports_root.resolve()
    recorded = Path(str(uri))
    recorded = recorded if recorded.is_absolute() else reports_root.parent / recorded  # relative to the home
    for candidate in (recorded, reports_root / model_name / recorded.name):
        path = candidate.resolve()
        if path.suffix == ".md" and path.is_relative_to(root) and path.is_file():
            return path
    return None
