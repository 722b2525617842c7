"""The numbers behind the Vigil page in the Airflow UI, and the page itself as plain HTML.

Everything here reads the warehouse through :class:`pipeline.warehouse.Warehouse` (so the same
code runs on PostgreSQL and on the embedded SQLite files) and returns plain, typed values; the
Airflow plugin (``plugins/vigil_plugin.py``) only wires these functions to routes behind
Airflow's authentication. Nothing here imports Airflow, and nothing on the page identifies a
patient: it shows counts, rates, score distributions, drift figures and model metadata.

The HTML is rendered on the server with inline CSS and inline SVG charts (no script, no external
resource), and every value from the warehouse or a report file is escaped.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from pipeline.warehouse import Warehouse

HISTOGRAM_BINS = 10
PSI_WATCH, PSI_SHIFT = 0.1, 0.25  # PSI < 0.1 stable, 0.1-0.25 worth a look, > 0.25 shifted

RUNS_SQL = ("SELECT run_id, night, prediction_time, started_at, published_at, status, stays_active, "
            "stays_scored, stays_unscored, risk_rows, models FROM vigil_audit.runs "
            "ORDER BY started_at DESC, run_id DESC LIMIT :limit")
RUN_COUNTS_SQL = ("SELECT run_id, source_table, records_in, used, quarantined, excluded "
                  "FROM vigil_audit.run_counts WHERE run_id IN :values")
DQ_LAST_NIGHT_SQL = "SELECT MAX(night) AS night FROM vigil_audit.dq_results"
DQ_SQL = ("SELECT source_table, expectation, column_name, success, element_count, unexpected_count "
          "FROM vigil_audit.dq_results WHERE night = :night")
RISK_LAST_NIGHT_SQL = "SELECT MAX(night) AS night FROM vigil_risk.risk_scores"
RISK_SQL = ("SELECT model_name, model_version, probability, risk_band, operating_threshold "
            "FROM vigil_risk.risk_scores WHERE night = :night")
DRIFT_NIGHTS_SQL = "SELECT DISTINCT night FROM vigil_audit.drift ORDER BY night DESC LIMIT :limit"
DRIFT_SQL = ("SELECT night, model_name, model_version, feature, psi FROM vigil_audit.drift "
             "WHERE night >= :first")
MODELS_SQL = ("SELECT model_name, version, candidate, trained_at, training_as_of, metrics_json, report_uri, "
              "promoted FROM vigil_models.model_versions ORDER BY trained_at DESC, model_name, version")
REPORT_URI_SQL = ("SELECT report_uri FROM vigil_models.model_versions "
                  "WHERE model_name = :model_name AND version = :version")


# ----------------------------------------------------------------------------- values


@dataclass(frozen=True)
class TableCount:
    """One canonical table's row accounting in one run: every row in is used, quarantined or excluded."""

    source_table: str
    records_in: int
    used: int
    quarantined: int
    excluded: int

    @property
    def closes(self) -> bool:
        return self.records_in == self.used + self.quarantined + self.excluded

    @property
    def failure_rate(self) -> float | None:
        """Quarantined share of the validated rows (used + quarantined), as ``VIGIL_MAX_FAILURE_RATE`` counts it."""
        validated = self.used + self.quarantined
        return self.quarantined / validated if validated else None


@dataclass(frozen=True)
class RunSummary:
    """One published night (``vigil_audit.runs``) with its per-table accounting."""

    run_id: str
    night: date
    prediction_time: datetime | None
    started_at: datetime | None
    published_at: datetime | None
    status: str
    stays_active: int
    stays_scored: int
    stays_unscored: int
    risk_rows: int
    models: dict[str, str]
    tables: tuple[TableCount, ...]

    @property
    def records_in(self) -> int:
        return sum(t.records_in for t in self.tables)

    @property
    def used(self) -> int:
        return sum(t.used for t in self.tables)

    @property
    def quarantined(self) -> int:
        return sum(t.quarantined for t in self.tables)

    @property
    def excluded(self) -> int:
        return sum(t.excluded for t in self.tables)

    @property
    def closes(self) -> bool:
        return all(t.closes for t in self.tables)

    @property
    def airflow_run(self) -> bool:
        """Whether the run id is an Airflow DAG run's (``manual__...``, ``scheduled__...``)."""
        return "__" in self.run_id


@dataclass(frozen=True)
class TableQuality:
    source_table: str
    validated: int
    quarantined: int
    failure_rate: float | None
    limit: float | None

    @property
    def over_limit(self) -> bool:
        return self.limit is not None and self.failure_rate is not None and self.failure_rate > self.limit


@dataclass(frozen=True)
class ExpectationRate:
    """One data-quality expectation's result for a night (``vigil_audit.dq_results``)."""

    source_table: str
    expectation: str
    column_name: str
    element_count: int
    unexpected_count: int
    success: bool

    @property
    def failure_rate(self) -> float:
        return self.unexpected_count / self.element_count if self.element_count else 0.0


@dataclass(frozen=True)
class DataQuality:
    night: date | None
    run_id: str | None
    tables: tuple[TableQuality, ...]
    expectations: tuple[ExpectationRate, ...]  # failing first, highest failure rate first

    @property
    def failing(self) -> tuple[ExpectationRate, ...]:
        return tuple(e for e in self.expectations if not e.success or e.unexpected_count)

    @property
    def passing(self) -> tuple[ExpectationRate, ...]:
        return tuple(e for e in self.expectations if e.success and not e.unexpected_count)


@dataclass(frozen=True)
class ScoreHistogram:
    """A model's scores for one night in ``HISTOGRAM_BINS`` equal bins over [0, 1]."""

    model_name: str
    model_versions: tuple[str, ...]
    night: date
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    mean: float
    median: float
    p90: float
    operating_threshold: float | None
    alerts: int | None  # scores at or above the operating threshold
    bands: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class DriftNight:
    night: date
    model_version: str
    score_psi: float | None
    features: int
    features_over_limit: int


@dataclass(frozen=True)
class ModelDrift:
    """A model's score PSI against training per night, and its most drifted inputs on the latest."""

    model_name: str
    nights: tuple[DriftNight, ...]  # oldest first
    top_features: tuple[tuple[str, float], ...]
    limit: float

    @property
    def latest(self) -> DriftNight:
        return self.nights[-1]


@dataclass(frozen=True)
class ModelVersion:
    model_name: str
    version: str
    candidate: str
    trained_at: datetime | None
    training_as_of: datetime | None
    promoted: bool
    metrics: dict[str, float]
    report_uri: str | None


@dataclass(frozen=True)
class Overview:
    """Everything the page shows, gathered in one pass."""

    generated_at: datetime
    backend: str
    runs: tuple[RunSummary, ...]
    data_quality: DataQuality
    histograms: tuple[ScoreHistogram, ...]
    drift: tuple[ModelDrift, ...] | None  # None: no drift table or no rows in it yet
    models: tuple[ModelVersion, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def latest_run(self) -> RunSummary | None:
        return self.runs[0] if self.runs else None


# ----------------------------------------------------------------------------- gathering


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
    runs = wh.read(RUNS_SQL, {"limit": int(limit)}, times=("prediction_time", "started_at", "published_at"))
    if runs.empty:
        return ()
    counts = wh.read_in(RUN_COUNTS_SQL, runs["run_id"].tolist())
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


_TABLES = ("cohort", "events", "notes", "ecgs", "images")


def _table_order(table: str) -> tuple[int, str]:
    return (_TABLES.index(table) if table in _TABLES else len(_TABLES), table)


def data_quality(wh: Warehouse, night: date | None = None, *,
                 limit_for: Callable[[str], float] | None = None,
                 runs: tuple[RunSummary, ...] | None = None) -> DataQuality:
    """Per table the quarantined share (against its limit) and per expectation the failure rate,
    for ``night`` (default: the latest night with data-quality results).

    The per-table figures come from the night's latest run in ``runs`` (default: read here)."""
    if night is None:
        found = wh.read(DQ_LAST_NIGHT_SQL)["night"].iloc[0]
        night = None if found is None or pd.isna(found) else _day(found)
    if night is None:
        return DataQuality(None, None, (), ())
    results = wh.read(DQ_SQL, {"night": night})
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
        found = wh.read(RISK_LAST_NIGHT_SQL)["night"].iloc[0]
        if found is None or pd.isna(found):
            return ()
        night = _day(found)
    risk = wh.read(RISK_SQL, {"night": night})
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
    if not wh.table_exists("vigil_audit.drift"):
        return None
    recent = wh.read(DRIFT_NIGHTS_SQL, {"limit": int(nights)})
    if recent.empty:
        return None
    first = min(_day(n) for n in recent["night"])
    drift = wh.read(DRIFT_SQL, {"first": first})
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
    rows = wh.read(MODELS_SQL, times=("trained_at", "training_as_of"))
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


# ----------------------------------------------------------------------------- reports


def report_path(wh: Warehouse, reports_root: Path, model_name: str, version: str) -> Path | None:
    """The Markdown training report of a registered version, or ``None``.

    The path comes from the registry (never from the request) and must lie inside
    ``reports_root`` (``$VIGIL_HOME/reports``) and end in ``.md``. A home moved since training
    (restored elsewhere, mounted at another path) keeps its reports at
    ``reports_root/<model>/<file>``, which is tried second.
    """
    rows = wh.read(REPORT_URI_SQL, {"model_name": model_name, "version": version})
    if rows.empty or rows["report_uri"].iloc[0] is None or pd.isna(rows["report_uri"].iloc[0]):
        return None
    root = reports_root.resolve()
    recorded = Path(str(rows["report_uri"].iloc[0]))
    recorded = recorded if recorded.is_absolute() else reports_root.parent / recorded  # relative to the home
    for candidate in (recorded, reports_root / model_name / recorded.name):
        path = candidate.resolve()
        if path.suffix == ".md" and path.is_relative_to(root) and path.is_file():
            return path
    return None


_BULLET = re.compile(r"^\s*[-*]\s+")
_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    """Escape a line of Markdown, keeping ``code`` and **bold**.

    >>> _inline("a <b> `x<y` **z**")
    'a &lt;b&gt; <code>x&lt;y</code> <strong>z</strong>'
    """
    out, last = [], 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[last:match.start()]))
        out.append(f"<code>{html.escape(match.group(1))}</code>" if match.group(1) is not None
                   else f"<strong>{html.escape(match.group(2))}</strong>")
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def render_markdown(text: str) -> str:
    """The subset of Markdown the training reports use (headings, bullet lists, pipe tables,
    paragraphs) as HTML; everything else is text, and all text is escaped.

    >>> render_markdown("# T <x>\\n\\n- a\\n- b\\n\\n| h |\\n|---|\\n| <i> |\\n")
    '<h1>T &lt;x&gt;</h1>\\n<ul><li>a</li><li>b</li></ul>\\n<table><thead><tr><th>h</th></tr></thead><tbody><tr><td>&lt;i&gt;</td></tr></tbody></table>'
    """
    blocks: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
            continue
        heading = re.match(r"(#{1,6})\s+(.*)", line)
        if heading:
            level = len(heading.group(1))
            blocks.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            i += 1
        elif _BULLET.match(line):
            items = []
            while i < len(lines) and _BULLET.match(lines[i]):
                item = _BULLET.sub("", lines[i].rstrip())
                items.append(f"<li>{_inline(item)}</li>")
                i += 1
            blocks.append(f"<ul>{''.join(items)}</ul>")
        elif line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            header, body = rows[0], rows[1:]
            if body and all(re.fullmatch(r":?-{2,}:?", c) for c in body[0]):
                body = body[1:]
            head = "".join(f"<th>{_inline(c)}</th>" for c in header)
            rows_html = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in body)
            blocks.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"(#{1,6}\s|\s*[-*]\s|\s*\|)", lines[i]):
                para.append(_inline(lines[i].strip()))
                i += 1
            blocks.append(f"<p>{' '.join(para)}</p>")
    return "\n".join(blocks)


# ----------------------------------------------------------------------------- HTML

CSS = """
:root { color-scheme: light; --fg:#1f2933; --muted:#616e7c; --line:#d9e2ec; --bg:#ffffff; --panel:#f5f7fa;
  --accent:#017cee; --ok:#2f855a; --warn:#b7791f; --bad:#c53030; }
* { box-sizing: border-box; }
body { margin: 0; padding: 20px 24px 40px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
h1 { font-size: 22px; margin: 0 0 2px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line);
  padding-bottom: 4px; } h3 { font-size: 14px; margin: 14px 0 6px; }
.sub { color: var(--muted); margin: 0 0 14px; } a { color: var(--accent); }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 130px; }
.card .v { font-size: 22px; font-weight: 600; } .card .k { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; } td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); font-weight: 600; }
.badge { display: inline-block; padding: 0 6px; border-radius: 9px; font-size: 12px; background: #e6f6ff; color: #035388; }
.badge.on { background: #e3f9e5; color: #05400a; }
.grid { display: flex; flex-wrap: wrap; gap: 0 32px; align-items: flex-start; }
section.half { flex: 1 1 520px; min-width: 0; }
.muted { color: var(--muted); } code { font-size: 12px; }
details summary { cursor: pointer; color: var(--muted); margin: 4px 0; }
svg text { font: 11px system-ui, sans-serif; fill: #3e4c59; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _n(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def _psi_class(psi: float | None, limit: float = PSI_SHIFT) -> str:
    if psi is None:
        return "muted"
    return "bad" if psi > limit else "warn" if psi > PSI_WATCH else "ok"


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def histogram_svg(h: ScoreHistogram, width: int = 420, height: int = 200) -> str:
    """Bars per bin with their counts, the [0, 1] axis and the operating threshold as a dashed line."""
    left, right, top, bottom = 34, 10, 30, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(max(h.counts), 1)
    bar_w = plot_w / len(h.counts)
    parts = [f'<svg width="{width}" height="{height}" role="img" '
             f'aria-label="score histogram {_e(h.model_name)}">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#9aa5b1"/>']
    for i, count in enumerate(h.counts):
        bar_h = plot_h * count / peak
        x = left + i * bar_w
        lo, hi = h.edges[i], h.edges[i + 1]
        color = "#c53030" if h.operating_threshold is not None and lo >= h.operating_threshold else "#017cee"
        parts.append(f'<rect x="{x + 1:.1f}" y="{top + plot_h - bar_h:.1f}" width="{bar_w - 2:.1f}" '
                     f'height="{bar_h:.1f}" fill="{color}" opacity="0.85"><title>{lo:.1f}–{hi:.1f}: {count}</title></rect>')
        if count:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - bar_h - 3:.1f}" text-anchor="middle">{count}</text>')
    for i in range(0, len(h.edges), 2):
        x = left + i * bar_w
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 14}" text-anchor="middle">{h.edges[i]:.1f}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 3}" text-anchor="middle">probability</text>')
    parts.append(f'<text x="4" y="{top + 4}">{peak}</text>')
    if h.operating_threshold is not None:
        x = left + plot_w * min(max(h.operating_threshold, 0.0), 1.0)
        anchor = "start" if x < left + plot_w * 0.7 else "end"
        parts.append(f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{top + plot_h}" stroke="#c53030" '
                     f'stroke-dasharray="4 3"/><text x="{x + (3 if anchor == "start" else -3):.1f}" y="12" '
                     f'text-anchor="{anchor}">operating threshold {h.operating_threshold:g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def drift_svg(d: ModelDrift, width: int = 420, height: int = 180) -> str:
    """Score PSI per night with the 0.1 and alert-limit reference lines."""
    left, right, top, bottom = 40, 40, 16, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [n.score_psi for n in d.nights]
    known = [v for v in values if v is not None]
    peak = max([d.limit * 1.2, *known]) if known else d.limit * 1.2
    n = len(d.nights)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))
        return x, top + plot_h - plot_h * v / peak

    parts = [f'<svg width="{width}" height="{height}" role="img" '
             f'aria-label="score drift {_e(d.model_name)}">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#9aa5b1"/>']
    for level, color, label in ((PSI_WATCH, "#b7791f", f"{PSI_WATCH:g}"), (d.limit, "#c53030", f"{d.limit:g}")):
        y = top + plot_h - plot_h * level / peak
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{color}" '
                     f'stroke-dasharray="4 3"/><text x="4" y="{y + 4:.1f}">{label}</text>')
    points = [xy(i, v) for i, v in enumerate(values) if v is not None]
    if len(points) > 1:
        parts.append('<polyline fill="none" stroke="#017cee" stroke-width="2" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + '"/>')
    for (i, v) in ((i, v) for i, v in enumerate(values) if v is not None):
        x, y = xy(i, v)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#017cee"><title>{d.nights[i].night}: '
                     f'PSI {v:.4f}</title></circle><text x="{x:.1f}" y="{max(y - 6, 10):.1f}" '
                     f'text-anchor="middle">{v:.3f}</text>')
    for i in sorted({0, n - 1}):
        x, _ = xy(i, 0.0)
        anchor = "middle" if n == 1 else "start" if i == 0 else "end"
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 14}" text-anchor="{anchor}">{d.nights[i].night}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 3}" text-anchor="middle">score PSI vs training</text>')
    parts.append("</svg>")
    return "".join(parts)


def _report_href(base: str, m: ModelVersion) -> str:
    return f"{base}/reports/{quote(m.model_name, safe='')}/{quote(m.version, safe='')}"


def render_page(ov: Overview, *, base: str = "/vigil", airflow_base: str = "/") -> str:
    """The Vigil page: latest night, runs and row accounting, data quality, scores, drift, models."""
    airflow = airflow_base.rstrip("/")
    out = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Vigil</title>"
           f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head><body>",
           "<h1>Vigil — nightly clinical risk scoring</h1>",
           f"<p class='sub'>Numbers read from the warehouse ({_e(ov.backend)}) at {_when(ov.generated_at)} UTC · "
           f"<a href='{_e(airflow)}/dags/vigil_nightly' target='_top'>vigil_nightly DAG</a> · "
           f"<a href='{_e(airflow)}/dags/vigil_training' target='_top'>vigil_training DAG</a> · "
           f"<a href='{_e(base)}/api/overview'>JSON</a></p>"]
    latest = ov.latest_run
    if latest is None:
        out.append("<p id='no-runs'>No night has been published yet: run the <code>vigil_nightly</code> DAG "
                   "(or <code>vigil run --date D</code>).</p>")
    else:
        alerts = sum(h.alerts or 0 for h in ov.histograms if h.night == latest.night)
        cards = [("night", "Latest night", str(latest.night)),
                 ("stays-scored", "Stays scored", _n(latest.stays_scored)),
                 ("stays-active", "Active stays", _n(latest.stays_active)),
                 ("stays-unscored", "Unscored (no data yet)", _n(latest.stays_unscored)),
                 ("risk-rows", "Risk rows", _n(latest.risk_rows)),
                 ("alerts", "Alerts at threshold", _n(alerts)),
                 ("quarantined", "Rows quarantined", _n(latest.quarantined)),
                 ("excluded", "Rows excluded", _n(latest.excluded))]
        out.append("<div class='cards'>" + "".join(
            f"<div class='card'><div class='v' id='kpi-{key}'>{_e(value)}</div><div class='k'>{_e(label)}</div></div>"
            for key, label, value in cards) + "</div>")
        out.append(f"<p class='muted'>Run <code>{_e(latest.run_id)}</code>, {_e(latest.status)} "
                   f"{_when(latest.published_at)} UTC; scored as of {_when(latest.prediction_time)} UTC; models "
                   + (", ".join(f"<code>{_e(k)}</code> {_e(v)}" for k, v in latest.models.items()) or "–") + ".</p>")
        out += _runs_section(ov, airflow)
    out += _quality_section(ov)
    out.append("<div class='grid'><section class='half'>")
    out += _scores_section(ov)
    out.append("</section><section class='half'>")
    out += _drift_section(ov)
    out.append("</section></div>")
    out += _models_section(ov, base)
    out.append("</body></html>")
    return "\n".join(out)


def _runs_section(ov: Overview, airflow: str) -> list[str]:
    out = ["<h2 id='runs'>Last runs</h2>",
           "<table id='runs-table'><thead><tr><th>night</th><th>run</th><th>status</th><th>published (UTC)</th>"
           "<th class='n'>active</th><th class='n'>scored</th><th class='n'>unscored</th><th class='n'>risk rows</th>"
           "<th class='n'>rows in</th><th class='n'>quarantined</th><th class='n'>excluded</th><th>closes</th></tr></thead><tbody>"]
    for r in ov.runs:
        run = (f"<a href='{_e(airflow)}/dags/vigil_nightly/runs/{_e(quote(r.run_id, safe=''))}' target='_top'>"
               f"{_e(r.run_id)}</a>" if r.airflow_run else _e(r.run_id))
        out.append(f"<tr><td>{r.night}</td><td><code>{run}</code></td><td>{_e(r.status)}</td>"
                   f"<td>{_when(r.published_at)}</td><td class='n'>{_n(r.stays_active)}</td>"
                   f"<td class='n'>{_n(r.stays_scored)}</td><td class='n'>{_n(r.stays_unscored)}</td>"
                   f"<td class='n'>{_n(r.risk_rows)}</td><td class='n'>{_n(r.records_in)}</td>"
                   f"<td class='n'>{_n(r.quarantined)}</td><td class='n'>{_n(r.excluded)}</td>"
                   f"<td>{_closes(r.closes)}</td></tr>")
    out.append("</tbody></table>")
    out.append("<h3>Row accounting per table: in = used + quarantined + excluded</h3>"
               "<table id='counts-table'><thead><tr><th>night</th><th>run</th><th>table</th><th class='n'>in</th>"
               "<th class='n'>used</th><th class='n'>quarantined</th><th class='n'>excluded</th><th>closes</th>"
               "</tr></thead><tbody>")
    for r in ov.runs[:5]:
        for t in r.tables:
            out.append(f"<tr><td>{r.night}</td><td><code>{_e(r.run_id)}</code></td><td>{_e(t.source_table)}</td>"
                       f"<td class='n'>{_n(t.records_in)}</td><td class='n'>{_n(t.used)}</td>"
                       f"<td class='n'>{_n(t.quarantined)}</td><td class='n'>{_n(t.excluded)}</td>"
                       f"<td>{_closes(t.closes)}</td></tr>")
    out.append("</tbody></table>")
    if len(ov.runs) > 5:
        out.append(f"<p class='muted'>Per-table accounting of the latest 5 of {len(ov.runs)} runs shown.</p>")
    return out


def _closes(ok: bool) -> str:
    return "<span class='ok'>✓</span>" if ok else "<span class='bad'>✗ does not close</span>"


def _quality_section(ov: Overview) -> list[str]:
    dq = ov.data_quality
    if dq.night is None:
        return ["<h2 id='quality'>Data quality</h2><p>No data-quality results yet.</p>"]
    out = [f"<h2 id='quality'>Data quality, night {dq.night}</h2>"]
    if dq.tables:
        out.append(f"<h3>Quarantined share per table (run <code>{_e(dq.run_id)}</code>)</h3>"
                   "<table id='dq-tables'><thead><tr><th>table</th><th class='n'>validated</th>"
                   "<th class='n'>quarantined</th><th class='n'>failure rate</th><th class='n'>limit</th></tr></thead><tbody>")
        for t in dq.tables:
            css = "bad" if t.over_limit else ("warn" if t.quarantined else "ok")
            out.append(f"<tr><td>{_e(t.source_table)}</td><td class='n'>{_n(t.validated)}</td>"
                       f"<td class='n'>{_n(t.quarantined)}</td><td class='n {css}'>{_pct(t.failure_rate)}</td>"
                       f"<td class='n'>{_pct(t.limit, 0)}</td></tr>")
        out.append("</tbody></table>")
    failing, passing = dq.failing, dq.passing
    out.append(f"<h3>Expectations with failing rows ({len(failing)} of {len(dq.expectations)})</h3>")
    if failing:
        out.append(_expectation_table(failing, "dq-failing"))
    else:
        out.append("<p class='ok'>Every expectation passed on every row.</p>")
    if passing:
        out.append(f"<details><summary>{len(passing)} expectations passed on every row</summary>"
                   + _expectation_table(passing, "dq-passing") + "</details>")
    return out


def _expectation_table(rows: tuple[ExpectationRate, ...], table_id: str) -> str:
    body = "".join(
        f"<tr><td>{_e(e.source_table)}</td><td><code>{_e(e.expectation)}</code></td><td><code>{_e(e.column_name)}</code></td>"
        f"<td class='n'>{_n(e.element_count)}</td><td class='n'>{_n(e.unexpected_count)}</td>"
        f"<td class='n {'warn' if e.unexpected_count else 'ok'}'>{_pct(e.failure_rate, 3)}</td></tr>"
        for e in rows)
    return (f"<table id='{table_id}'><thead><tr><th>table</th><th>expectation</th><th>column</th><th class='n'>rows</th>"
            f"<th class='n'>failing</th><th class='n'>failure rate</th></tr></thead><tbody>{body}</tbody></table>")


def _scores_section(ov: Overview) -> list[str]:
    if not ov.histograms:
        return ["<h2 id='scores'>Score distribution</h2><p>No scores yet.</p>"]
    out = [f"<h2 id='scores'>Score distribution, night {ov.histograms[0].night}</h2><div class='grid'>"]
    for h in ov.histograms:
        bands = ", ".join(f"{_e(k)} {v:,}" for k, v in h.bands.items())
        out.append(f"<div class='model-scores' data-model='{_e(h.model_name)}'><h3>{_e(h.model_name)} "
                   f"<span class='muted'>{_e(', '.join(h.model_versions))}</span></h3>{histogram_svg(h)}"
                   f"<table><tbody><tr><th>stays scored</th><td class='n' data-total='{h.total}'>{_n(h.total)}</td></tr>"
                   f"<tr><th>mean / median / p90</th><td class='n'>{h.mean:.3f} / {h.median:.3f} / {h.p90:.3f}</td></tr>"
                   f"<tr><th>alerts at threshold {'' if h.operating_threshold is None else f'{h.operating_threshold:g}'}</th>"
                   f"<td class='n'>{_n(h.alerts)}</td></tr><tr><th>risk bands</th><td>{bands}</td></tr>"
                   f"<tr><th>per bin</th><td><code>{' '.join(str(c) for c in h.counts)}</code></td></tr></tbody></table></div>")
    out.append("</div>")
    return out


def _drift_section(ov: Overview) -> list[str]:
    out = ["<h2 id='drift'>Drift versus training</h2>"]
    if not ov.drift:
        out.append("<p id='no-drift'>No drift figures yet (the nightly <code>report</code> stage writes "
                   "<code>vigil_audit.drift</code>).</p>")
        return out
    out.append(f"<p class='muted'>Population stability index against the training distribution: below {PSI_WATCH:g} "
               f"stable, {PSI_WATCH:g}–{PSI_SHIFT:g} worth a look, above {PSI_SHIFT:g} shifted.</p><div class='grid'>")
    for d in ov.drift:
        rows = "".join(
            f"<tr><td>{n.night}</td><td><code>{_e(n.model_version)}</code></td>"
            f"<td class='n {_psi_class(n.score_psi, d.limit)}'>{'–' if n.score_psi is None else f'{n.score_psi:.4f}'}</td>"
            f"<td class='n'>{n.features_over_limit:,} of {n.features:,}</td></tr>"
            for n in reversed(d.nights[-10:]))
        top = "".join(f"<tr><td><code>{_e(f)}</code></td><td class='n {_psi_class(p, d.limit)}'>{p:.4f}</td></tr>"
                      for f, p in d.top_features)
        out.append(f"<div class='model-drift' data-model='{_e(d.model_name)}'><h3>{_e(d.model_name)}</h3>{drift_svg(d)}"
                   "<table><thead><tr><th>night</th><th>version</th><th class='n'>score PSI</th>"
                   f"<th class='n'>features PSI &gt; {d.limit:g}</th></tr></thead><tbody>{rows}</tbody></table>"
                   f"<h3>Most drifted inputs, night {d.latest.night}</h3><table><thead><tr><th>feature</th>"
                   f"<th class='n'>PSI</th></tr></thead><tbody>{top}</tbody></table></div>")
    out.append("</div>")
    return out


def _models_section(ov: Overview, base: str) -> list[str]:
    out = ["<h2 id='models'>Models</h2>"]
    if not ov.models:
        return out + ["<p>No model has been trained yet: trigger the <code>vigil_training</code> DAG.</p>"]
    out.append("<table id='models-table'><thead><tr><th>model</th><th>version</th><th>candidate</th>"
               "<th>trained (UTC)</th><th>data known by</th><th class='n'>discrimination</th><th class='n'>AUPRC</th>"
               "<th class='n'>Brier</th><th></th><th>report</th></tr></thead><tbody>")
    for m in ov.models:
        metric = {k: ("–" if m.metrics.get(k) is None else f"{m.metrics[k]:.3f}") for k in ("auprc", "brier")}
        metric["auroc"] = _discrimination(m.metrics)
        report = f"<a href='{_e(_report_href(base, m))}'>training report</a>" if m.report_uri else "–"
        badge = "<span class='badge on'>promoted</span>" if m.promoted else ""
        out.append(f"<tr><td>{_e(m.model_name)}</td><td><code>{_e(m.version)}</code></td><td>{_e(m.candidate)}</td>"
                   f"<td>{_when(m.trained_at)}</td><td>{_when(m.training_as_of)}</td><td class='n'>{metric['auroc']}</td>"
                   f"<td class='n'>{metric['auprc']}</td><td class='n'>{metric['brier']}</td><td>{badge}</td>"
                   f"<td>{report}</td></tr>")
    out.append("</tbody></table>")
    return out


def _discrimination(metrics: dict) -> str:
    """A version's headline held-out metric for its task: Harrell's C (survival), the macro
    one-vs-rest AUROC (multiclass, told by its macro F1) or the AUROC.

    >>> _discrimination({"c_index": 0.7412, "auroc": 0.69}), _discrimination({"macro_f1": 0.5, "auroc": 0.735})
    ('0.741 C-index', '0.735 macro AUROC')
    """
    for key, label in (("c_index", "C-index"), ("macro_f1", "macro AUROC"), ("auroc", "AUROC")):
        if key in metrics:
            value = metrics.get("auroc" if key == "macro_f1" else key)
            return "–" if value is None else f"{value:.3f} {label}"
    return "–"


def render_report_page(title: str, markdown: str, *, base: str = "/vigil") -> str:
    """A training report as a page of its own, with a way back to the Vigil page."""
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body><p><a href='{_e(base)}/'>← Vigil</a></p>"
            f"<article class='report'>{render_markdown(markdown)}</article></body></html>")


def render_message(title: str, message: str, *, base: str = "/vigil") -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body><p><a href='{_e(base)}/'>← Vigil</a></p><h1>{_e(title)}</h1>"
            f"<p>{_e(message)}</p></body></html>")
