"""What the Vigil page shows, as plain typed values (no warehouse, no HTML)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

HISTOGRAM_BINS = 10
PSI_WATCH, PSI_SHIFT = 0.1, 0.25  # PSI < 0.1 stable, 0.1-0.25 worth a look, > 0.25 shifted


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
