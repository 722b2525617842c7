"""One night, stage by stage, as the nightly DAG and ``vigil run`` both call it.

A night D scores every stay in the ICU at its prediction time, D + 1 day at 00:00 UTC (the end
of D's data interval). Stages hand over Parquet files in ``<home>/runs/<D>/<stage>/`` and
return only small summaries (what Airflow keeps in XCom). Nothing is visible in the warehouse
until ``publish``; re-running any stage, or the whole night, gives the same result.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import monitoring
from pipeline.alerts import alert_night, night_alerts
from pipeline.config import Settings, load_settings, resolve_device
from pipeline.embed.intervals import ecg_intervals
from pipeline.embed.isolation import Budget
from pipeline.embed.modalities import MODALITY_TABLE, embed_records, hash_records, stay_embedding
from pipeline.embed.text import TextEncoder
from pipeline.features.incremental import advance, edge_ranges
from pipeline.features.windows import EVENT_COLUMNS, KEY, static_features
from pipeline.filestore import FileStore
from pipeline.frames import MODALITY_OF, RECORD_TABLES, TIME
from pipeline.modeling import registry
from pipeline.modeling.inputs import build_inputs, event_sequences, presence, tabular_frame
from pipeline.modeling.spec import load_specs, parse_spec
from pipeline.publish import NightResults, accounting, publish
from pipeline.report import night_report
from pipeline.score import score_stays
from pipeline.sources.mimic import extract, read_enrolment
from pipeline.validate.checks import RECORD_ID, enforce_thresholds, validate
from pipeline.warehouse import Warehouse, connect, to_time

log = logging.getLogger(__name__)

STAGES = ("extract", "validate", "features", "embed", "score", "publish", "report")
TABLES = ("cohort", "events", "notes", "ecgs", "images")


def as_night(value: str | date | datetime) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def night_for_run(logical_date: datetime | None, run_after: datetime) -> date:
    """The night an Airflow run scores.

    A scheduled run covers the data interval that starts at its logical date, so the night is
    that date (UTC). A manual run without a logical date scores the last complete day before
    it was triggered.

    >>> night_for_run(datetime(2026, 2, 28, tzinfo=timezone.utc), datetime(2026, 3, 1, tzinfo=timezone.utc))
    datetime.date(2026, 2, 28)
    >>> night_for_run(None, datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc))
    datetime.date(2026, 2, 28)
    """
    if logical_date is not None:
        return logical_date.astimezone(timezone.utc).date() if logical_date.tzinfo else logical_date.date()
    after = run_after.astimezone(timezone.utc) if run_after.tzinfo else run_after
    return (after - timedelta(days=1)).date()


class NightNotPublished(RuntimeError):
    """The report of a night that no run has published (the DAG skips its report then)."""


class RunFolderError(OSError):
    """The night's working folder cannot be written (disk full, read-only, not a directory)."""


RUN_FOLDERS_KEPT_HOURS = 24  # an earlier run's folder of the same night is removed after this long


def run_key(run_id: str) -> str:
    """A run id as a folder name (Airflow's hold ``:`` and ``+``).

    >>> run_key("manual__2026-01-30T00:00:00+00:00")
    'manual__2026-01-30T00_00_00_00_00'
    """
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


@dataclass
class Night:
    """Where one run of a night keeps its files, and the night's prediction time.

    Each run has its own folder, ``<home>/runs/<D>/<run>/<stage>/``, so two runs of one night
    (a manual re-run while the scheduled one works) never read each other's half-written files;
    ``runs/<D>/current`` names the run extracted last, which a stage given no run id works on.
    """

    settings: Settings
    night: date
    run_id: str | None = None

    def __post_init__(self) -> None:
        self._folder = None if self.run_id is None else self.night_folder / run_key(self.run_id)

    @property
    def prediction_time(self) -> datetime:
        return datetime.combine(self.night + timedelta(days=1), datetime.min.time())

    @property
    def night_folder(self) -> Path:
        return self.settings.run_dir(self.night.isoformat())

    @property
    def folder(self) -> Path:
        """This run's folder; without a run id, the night's current run, looked up once so a
        stage never reads one run's files and writes another's."""
        if self._folder is None:
            pointer = self.night_folder / "current"
            try:
                self._folder = self.night_folder / pointer.read_text().strip()
            except FileNotFoundError as error:
                raise FileNotFoundError(f"night {self.night} has not been extracted ({pointer} missing)") from error
            except OSError as error:
                raise RunFolderError(f"night {self.night}: cannot read {pointer}: {error.strerror or error}") from error
        return self._folder

    def start(self) -> None:
        """Begin this run's extraction in an empty ``extract`` folder; earlier runs' folders of the
        night in which nothing was written for a day are removed. The run's later stages keep
        their files until the extraction is done: an operator who clears ``extract`` alone
        re-extracts the same rows, and the stages not cleared with it (still ``success``) must
        still find what they wrote; :func:`extract_stage` removes them when the rows or models
        differ."""
        shutil.rmtree(self.folder / "extract", ignore_errors=True)
        self.path("extract", "")
        cutoff = datetime.now().timestamp() - RUN_FOLDERS_KEPT_HOURS * 3600
        for other in self.night_folder.iterdir():
            if other != self.folder and other.is_dir() and _last_written(other) < cutoff:
                shutil.rmtree(other, ignore_errors=True)

    def extracted_before(self) -> dict | None:
        """The manifest of this run's earlier extraction (a retry, or ``extract`` cleared), if any."""
        try:
            return json.loads((self.folder / "extract" / "manifest.json").read_text())
        except (OSError, ValueError):
            return None

    def extracted_sha256(self) -> str:
        """A digest of every file the extraction wrote (before its manifest)."""
        digest = hashlib.sha256()
        for path in sorted((self.folder / "extract").glob("*.parquet")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def clear_after(self, stage: str) -> None:
        """Remove this run's files of every stage but ``stage``."""
        for folder in self.folder.iterdir():
            if folder.is_dir() and folder.name != stage:
                shutil.rmtree(folder, ignore_errors=True)

    def make_current(self) -> None:
        """Name this run the night's current one (after its extraction is complete)."""
        pointer = self.night_folder / "current"
        staged = pointer.with_name(f".current-{uuid.uuid4().hex[:8]}")
        staged.write_text(self.folder.name)
        os.replace(staged, pointer)  # atomic: a reader sees the old run or the new one, never half

    def path(self, stage: str, name: str) -> Path:
        folder = self.folder / stage
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"night {self.night}: cannot create {folder}: {error.strerror or error} "
                                 f"(VIGIL_HOME must be a writable directory with free space)") from error
        return folder / name

    def write(self, stage: str, name: str, frame: pd.DataFrame) -> None:
        path = self.path(stage, f"{name}.parquet")
        try:
            frame.to_parquet(path, index=False)
        except OSError as error:
            raise RunFolderError(f"night {self.night}: cannot write {path}: {error.strerror or error} "
                                 f"(is the disk full?)") from error

    def read(self, stage: str, name: str) -> pd.DataFrame:
        path = self.folder / stage / f"{name}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run the '{stage}' stage of night {self.night} first")
        return pd.read_parquet(path)

    def manifest(self) -> dict:
        path = self.folder / "extract" / "manifest.json"
        if not path.exists():
            raise FileNotFoundError(f"night {self.night} has not been extracted ({path} missing)")
        return json.loads(path.read_text())


def _same_input(earlier: dict, manifest: dict) -> bool:
    """Whether two extractions of one run hand its later stages the same rows and models."""
    keys = ("prediction_time", "since", "models", "records_in", "extracted_sha256")
    return all(earlier.get(k) == manifest.get(k) for k in keys)


def _last_written(folder: Path) -> float:
    """When anything in a run folder was last written (0 when it vanished meanwhile)."""
    try:
        return max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.rglob("*")])
    except OSError:
        return 0.0


def run_folder(night, settings: Settings | None = None, run_id: str | None = None) -> Path:
    """The folder of a run of ``night`` (default: the run extracted last)."""
    return Night(settings or load_settings(), as_night(night), run_id).folder


_WAREHOUSES: dict[tuple[str, str], Warehouse] = {}


@atexit.register
def _close_warehouses() -> None:
    for wh in _WAREHOUSES.values():
        wh.dispose()


def _context(night, settings: Settings | None, run_id: str | None = None) -> tuple[Night, Warehouse]:
    """A run's folders and its warehouse; one engine per warehouse per process, so a loop
    of nights (``vigil run`` over dates, retries) does not open a new pool per stage."""
    settings = settings or load_settings()
    key = (settings.warehouse_url, str(settings.sql_dir))
    if key not in _WAREHOUSES:
        _WAREHOUSES[key] = connect(settings)
    return Night(settings, as_night(night), run_id), _WAREHOUSES[key]


def promoted_models(wh: Warehouse, settings: Settings) -> dict[str, dict]:
    """The promoted version of every spec in ``models/`` (error if none is trained)."""
    found, untrained = {}, []
    for spec in load_specs(settings.models_dir):
        row = registry.promoted(wh, spec.name)
        if row is None:
            untrained.append(spec.name)
            continue
        found[spec.name] = {"version": row["version"], "artifact_uri": row["artifact_uri"]}
    if untrained:
        log.warning("models without a promoted version are not scored: %s (run `vigil train`)", ", ".join(untrained))
    if not found:
        raise RuntimeError(f"no model has a promoted version ({', '.join(untrained)}): run `vigil train` first")
    return found


def watermarks_before(wh: Warehouse, night: date) -> dict[str, datetime]:
    """Per source table, how far the nights before this one have ingested."""
    rows = wh.read("SELECT source_table, MAX(high_water) AS high_water FROM vigil_audit.watermarks "
                   "WHERE night < :night GROUP BY source_table", {"night": night}, times=("high_water",))
    return {r.source_table: r.high_water.to_pydatetime() for r in rows.itertuples()}


# ---------------------------------------------------------------------------------- stages

def extract_stage(night, settings: Settings | None = None, run_id: str | None = None) -> dict:
    ctx, wh = _context(night, settings, run_id or f"{as_night(night)}-{uuid.uuid4().hex[:8]}")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    if ctx.prediction_time > now:
        raise ValueError(f"night {ctx.night} is not over until {ctx.prediction_time} UTC; "
                         f"score a night whose prediction time has passed")
    models = promoted_models(wh, ctx.settings)
    for info in models.values():
        info["spec"] = registry.load_bundle(info["artifact_uri"], ctx.settings.home).spec_raw
    earlier = ctx.extracted_before()
    ctx.start()
    since = watermarks_before(wh, ctx.night)
    extraction = extract(wh, until=ctx.prediction_time, since=since)
    for table, frame in extraction.frames.items():
        ctx.write("extract", table, frame)
    ctx.write("extract", "excluded", extraction.excluded)
    ctx.write("extract", "quarantined", extraction.quarantined)
    manifest = {
        "run_id": ctx.run_id,
        "night": ctx.night.isoformat(), "prediction_time": ctx.prediction_time.isoformat(sep=" "),
        "started_at": now.replace(microsecond=0).isoformat(sep=" "),
        "since": {t: v.isoformat(sep=" ") for t, v in since.items()},
        "models": models,
        "records_in": {t: extraction.records_in(t) for t in TABLES},
    }
    manifest = json.loads(json.dumps(manifest, default=str))
    manifest["extracted_sha256"] = ctx.extracted_sha256()
    if earlier is not None and _same_input(earlier, manifest):
        log.info("night %s: run %s extracted again, the same rows for the same models: its later stages' files "
                 "stay", ctx.night, ctx.run_id)
    else:
        ctx.clear_after("extract")  # files of an earlier try made from other rows or models: never mixed in
    ctx.path("extract", "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    ctx.make_current()
    return {"run_id": manifest["run_id"], "records_in": manifest["records_in"]}


NO_DATA = "no measurement, note, ECG or image by the prediction time"


def validate_stage(night, settings: Settings | None = None, run_id: str | None = None) -> dict:
    ctx, wh = _context(night, settings, run_id)
    frames = {t: ctx.read("extract", t) for t in TABLES}
    outcome = validate(frames, ctx.prediction_time, ctx.read("extract", "quarantined"))
    for table, result in outcome.tables.items():
        ctx.write("validate", table, result.valid)
        ctx.write("validate", f"{table}_duplicates", result.duplicates)
    ctx.write("validate", "quarantine", outcome.quarantine())
    ctx.write("validate", "dq", outcome.dq())
    in_icu, unscored = _scorable(wh, ctx, outcome)
    ctx.write("validate", "active", in_icu[~in_icu["stay_id"].isin(unscored["stay_id"])])
    ctx.write("validate", "unscored", unscored)
    ctx.write("validate", "rows_quarantined", pd.DataFrame(
        {"source_table": list(outcome.tables), "rows": [r.rows_quarantined for r in outcome.tables.values()]}))
    summary = {t: {"valid": len(r.valid), "quarantined": r.rows_quarantined,
                   "duplicates": len(r.duplicates), "failure_rate": round(r.failure_rate, 4)}
               for t, r in outcome.tables.items()}
    summary["unscored_stays"] = len(unscored)
    enforce_thresholds(outcome, ctx.settings.failure_rate_limit, ctx.settings.failure_rate_min_rows)
    return summary


SUPERSEDED = "still open while a later ICU stay of the same patient is open (a transfer never closed)"


def open_stay_conflicts(open_stays: pd.DataFrame, prediction_time: datetime, max_open_days: int) -> pd.DataFrame:
    """Open stays a night cannot score as they stand, with the reason: a patient in two open
    ICU stays (the earlier is not scored; its data stay valid, and it is scored again once the
    feed closes one), and a stay open longer than ``max_open_days`` (a discharge never recorded).

    >>> stays = pd.DataFrame({"stay_id": [1, 2, 3], "subject_id": [7, 7, 8],
    ...     "admit_time": pd.to_datetime(["2026-01-01", "2026-01-05", "1925-01-30"])})
    >>> open_stay_conflicts(stays, datetime(2026, 1, 6), 365)["stay_id"].tolist()
    [1, 3]
    """
    later_open = open_stays["admit_time"] < open_stays.groupby("subject_id")["admit_time"].transform("max")
    days = (pd.Timestamp(prediction_time) - open_stays["admit_time"]) / pd.Timedelta(days=1)
    reasons = pd.Series(pd.NA, index=open_stays.index, dtype="string")
    reasons[days > max_open_days] = f"still open more than {max_open_days} days after ICU admission " \
                                    f"(a discharge never recorded)"
    reasons[later_open] = SUPERSEDED
    flagged = reasons.notna()
    return pd.DataFrame({"stay_id": open_stays.loc[flagged, "stay_id"].astype("int64").to_numpy(),
                         "reason": reasons[flagged].to_numpy()})


def _scorable(wh: Warehouse, ctx: Night, outcome) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stays in the ICU at the prediction time, and those of them the night does not score.

    A stay with nothing measured, written or recorded yet (admitted minutes before midnight, or
    a feed that never arrived) is not scored from demographics alone: it is listed with a
    reason instead, and scored on the first night it has data. So is an open stay whose state
    the feed contradicts (:func:`open_stay_conflicts`).
    """
    cohort = outcome.valid("cohort")
    open_stays = cohort[cohort["discharge_time"].isna()]
    in_icu = open_stays[["stay_id", "subject_id"]].copy()
    in_icu["prediction_time"] = pd.Series(pd.Timestamp(ctx.prediction_time), index=in_icu.index).astype(TIME)
    in_icu = in_icu.sort_values("stay_id").reset_index(drop=True)
    conflicts = open_stay_conflicts(open_stays, ctx.prediction_time, ctx.settings.max_open_stay_days)
    with_data = set()
    for table in ("events", *RECORD_TABLES):
        with_data |= set(outcome.valid(table)["stay_id"].dropna().astype(int))
    missing = [int(s) for s in in_icu["stay_id"] if int(s) not in with_data and int(s) not in set(conflicts["stay_id"])]
    for store in ("stay_events", "stay_records"):
        if missing:
            with_data |= set(wh.read_in(
                f"SELECT DISTINCT stay_id FROM vigil_features.{store} WHERE stay_id IN :values "
                "AND ingest_night <> :night AND time <= :t AND arrival_time <= :t", missing,
                {"night": ctx.night, "t": ctx.prediction_time})["stay_id"].astype(int))
            missing = [s for s in missing if s not in with_data]
    unscored = pd.concat([conflicts, in_icu[in_icu["stay_id"].isin(missing)][["stay_id"]].assign(reason=NO_DATA)],
                         ignore_index=True)
    return in_icu, unscored.sort_values("stay_id").reset_index(drop=True)


def _active(ctx: Night) -> pd.DataFrame:
    """The stays scored tonight: in the ICU at the prediction time, with some data."""
    return ctx.read("validate", "active")


def features_stage(night, settings: Settings | None = None, run_id: str | None = None) -> dict:
    """Window features for every active stay; incremental when last night was published.

    With last night's features in the warehouse and tonight's extraction starting at last
    night's prediction time, only stays whose window contents changed are recomputed from their
    stored events; the rest carry forward (``pipeline/features/incremental.py``).
    """
    ctx, wh = _context(night, settings, run_id)
    manifest = ctx.manifest()
    cohort = ctx.read("validate", "cohort")
    active = _active(ctx)
    ctx.write("features", "active", active)
    t1 = ctx.prediction_time
    t0 = t1 - timedelta(days=1)
    tonight = ctx.read("validate", "events")
    continuous = manifest["since"].get("events") == t0.isoformat(sep=" ")
    summary = {"active_stays": len(active)}
    for name, info in manifest["models"].items():
        spec = parse_spec(info["spec"], name)
        windows = spec.window_spec
        previous = _previous_features(wh, ctx.night - timedelta(days=1), name, info["version"], windows) \
            if continuous else None
        edges = []
        for low, high in edge_ranges(windows, t0, t1) if previous is not None else []:
            edges += wh.read_in("SELECT DISTINCT stay_id FROM vigil_features.stay_events WHERE stay_id IN :values "
                                "AND ingest_night <> :night AND time > :low AND time <= :high",
                                active["stay_id"].tolist(), {"night": ctx.night, "low": low, "high": high}
                                )["stay_id"].tolist()
        windowed, counts = advance(previous, active["stay_id"].to_numpy(), tonight["stay_id"].to_numpy(), edges,
                                   lambda stays, since: _stay_events(wh, ctx, stays, since, tonight), windows, t0, t1)
        features = static_features(cohort, active[KEY]).merge(windowed, on=KEY, how="left")
        ctx.write("features", name, features)
        summary[name] = counts
        _write_event_sequences(wh, ctx, name, spec, active, tonight)
    return summary


def _write_event_sequences(wh: Warehouse, ctx: Night, name: str, spec, active: pd.DataFrame,
                           tonight: pd.DataFrame) -> None:
    """A model's events modalities (windows of its lab/vital codes), where the embed stage's
    files are: ``embed/<model>.<modality>.npz``, for the score stage."""
    for m in (m for m in spec.modalities if spec.source(m) == "events"):
        hours = int(spec.sequence.get("window_hours", 6)) * int(spec.sequence["windows"])
        events = _stay_events(wh, ctx, active["stay_id"], ctx.prediction_time - timedelta(hours=hours), tonight)
        values, mask = event_sequences(spec, events, active)
        np.savez(ctx.path("embed", f"{name}.{m}.npz"), stay_id=active["stay_id"].to_numpy(), vectors=values, mask=mask)


def _previous_features(wh: Warehouse, night: date, model: str, version: str, spec) -> pd.DataFrame | None:
    """Last night's published window features, if that night scored with the same model version."""
    runs = wh.read("SELECT models FROM vigil_audit.runs WHERE night = :night ORDER BY published_at DESC",
                   {"night": night})
    if runs.empty or json.loads(runs["models"].iloc[0]).get(model) != version:
        return None
    long = wh.read("SELECT stay_id, feature, value FROM vigil_features.stay_features WHERE night = :night",
                   {"night": night})
    wide = long[long["feature"].isin(spec.columns())].pivot(index="stay_id", columns="feature", values="value")
    return wide.reindex(columns=spec.columns()).astype("float64").reset_index()


def _stay_events(wh: Warehouse, ctx: Night, stays, since, tonight: pd.DataFrame) -> pd.DataFrame:
    """Stored and tonight's events of ``stays`` with time after ``since`` (None: all), in
    (stay, time, value) order; a source row that arrived again tonight (a correction) replaces
    its stored version."""
    stays = [int(s) for s in stays]
    window = "" if since is None else "AND time > :since "
    stored = wh.read_arrow(
        "SELECT stay_id, time, arrival_time, code, value, source_row_id FROM vigil_features.stay_events "
        f"WHERE stay_id IN :values AND ingest_night <> :night AND arrival_time <= :t {window}"
        "ORDER BY stay_id, time, value",
        {"night": ctx.night, "t": ctx.prediction_time, **({} if since is None else {"since": since})}, stays).to_pandas()
    stored = stored[~stored["source_row_id"].isin(tonight["source_row_id"])]
    for column in ("time", "arrival_time"):
        stored[column] = to_time(stored[column])
    fresh = tonight[tonight["stay_id"].isin(stays)]
    if since is not None:
        fresh = fresh[fresh["time"] > since]
    return pd.concat([stored[EVENT_COLUMNS], fresh[EVENT_COLUMNS]], ignore_index=True)


def _history_records(wh: Warehouse, ctx: Night, active: pd.DataFrame) -> pd.DataFrame:
    return wh.read_in(
        "SELECT modality, record_id, stay_id, time, arrival_time, category, uri, text, content_hash "
        "FROM vigil_features.stay_records WHERE stay_id IN :values AND ingest_night <> :night AND arrival_time <= :t",
        active["stay_id"].tolist(), {"night": ctx.night, "t": ctx.prediction_time}, times=("time", "arrival_time"))


EMBED_MODALITIES = ("notes", "ecg", "images")


def embed_stage(night, settings: Settings | None = None, modality: str | None = None,
                run_id: str | None = None) -> dict:
    """Embeddings of one modality (the DAG runs a task per modality, on the ``gpu`` queue) or of
    all. Per model and modality, ``embed/<model>.<modality>.npz`` holds the pooled vector and a
    presence mask of every active stay; each record table gets its usable records and its
    unreadable ones (with reasons) for publish."""
    if modality is not None and modality not in EMBED_MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; modalities are {', '.join(EMBED_MODALITIES)}")
    ctx, wh = _context(night, settings, run_id)
    manifest = ctx.manifest()
    device = resolve_device(ctx.settings.device)
    store = FileStore.from_settings(ctx.settings)
    budget = Budget.from_settings(ctx.settings)
    active = _active(ctx)
    history = _history_records(wh, ctx, active)
    bundles = {name: registry.load_bundle(info["artifact_uri"], ctx.settings.home)
               for name, info in manifest["models"].items()}
    summary = {}
    for current in [modality] if modality else EMBED_MODALITIES:
        table = MODALITY_TABLE[current]
        tonight, unreadable = hash_records(ctx.read("validate", table), current, store,
                                           workers=ctx.settings.decode_workers)
        failures = [unreadable]
        past = history[history["modality"] == MODALITY_OF[table]]
        # a record re-sent tonight is tonight's version or nothing (quarantined), never its stale past one
        past = past[~past["record_id"].isin(ctx.read("extract", table)["record_id"].astype(str))]
        everything = pd.concat([tonight, past], ignore_index=True)
        for name, bundle in bundles.items():
            spec = parse_spec(bundle.spec_raw, name)
            for m in (m for m in bundle.inputs if m != "tabular" and spec.source(m) == current):
                encoder = _encoder_for(bundle, m, ctx.settings, device)
                records = spec.modality_records(m, everything)
                vectors, failed, new = embed_records(wh, current, records, encoder, store, device=device,
                                                     workers=ctx.settings.decode_workers, budget=budget)
                failures.append(failed)
                dim = encoder.dim if current == "notes" else encoder.network.config["embedding_dim"]
                matrix, mask = stay_embedding(records, vectors, active, dim, spec.modalities[m])
                np.savez(ctx.path("embed", f"{name}.{m}.npz"), stay_id=active["stay_id"].to_numpy(),
                         vectors=matrix, mask=mask)
                summary[f"{name}.{m}"] = {"records": len(records), "newly_embedded": new,
                                          "stays_with_data": int(presence(mask).sum())}
        failed = pd.concat(failures, ignore_index=True).drop_duplicates(["source_table", "record_id"])
        ctx.write("embed", f"failures_{table}", failed)
        readable = tonight[~tonight["record_id"].isin(failed["record_id"])]
        ctx.write("embed", f"records_{table}", readable)
        if current == "ecg":
            intervals = ecg_intervals(wh, readable, store, workers=ctx.settings.decode_workers, budget=budget)
            ctx.write("embed", "ecg_intervals", intervals)
            summary["ecg_intervals_from_signal"] = int((intervals["measured_by"] == "signal").sum())
        summary[f"unreadable_{table}"] = len(failed)
    return summary


def _encoder_for(bundle: registry.Bundle, modality: str, settings: Settings, device: str):
    if modality in bundle.signal_encoders:
        return bundle.signal_encoders[modality]
    trained = bundle.text_encoder
    encoder = TextEncoder.from_description(trained, batch_size=settings.embed_batch_size, device=device)
    if encoder.encoder_id != trained["encoder_id"]:
        raise RuntimeError(f"{bundle.model_name} {bundle.version} was trained with text encoder "
                           f"{trained['encoder_id']}, but {encoder.encoder_id} is installed: retrain the model")
    return encoder


def night_models(night, settings: Settings | None = None, run_id: str | None = None) -> list[str]:
    """The models the night scores (those promoted when it was extracted)."""
    ctx, _ = _context(night, settings, run_id)
    return sorted(ctx.manifest()["models"])


def score_stage(night, settings: Settings | None = None, model: str | None = None,
                run_id: str | None = None) -> dict:
    """Score tonight's active stays enrolled in each model's cohort with its promoted version
    (one model: the DAG maps a task over the promoted models); ``score/risk.<model>`` each."""
    ctx, wh = _context(night, settings, run_id)
    manifest = ctx.manifest()
    if model is not None and model not in manifest["models"]:
        raise ValueError(f"model {model!r} has no promoted version in night {ctx.night}'s manifest "
                         f"({', '.join(manifest['models'])})")
    active = _active(ctx)
    summary = {}
    for name in [model] if model else list(manifest["models"]):
        bundle = registry.load_bundle(manifest["models"][name]["artifact_uri"], ctx.settings.home)
        spec = parse_spec(bundle.spec_raw, name)
        features = ctx.read("features", name)
        embedded = {}
        for modality in (m for m in bundle.inputs if m != "tabular"):
            path = ctx.folder / "embed" / f"{name}.{modality}.npz"
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: run the embed stage ({modality}) of night {ctx.night}")
            stored = np.load(path)
            if not np.array_equal(stored["stay_id"], active["stay_id"].to_numpy()):
                raise RuntimeError(f"{modality} embeddings of night {ctx.night} are stale: re-run the embed stage")
            embedded[modality] = (stored["vectors"], stored["mask"])
        inputs = build_inputs(spec, features, embedded)
        enrolled = read_enrolment(wh, spec.cohort_query, ctx.prediction_time)
        keep = np.ones(len(active), bool) if enrolled is None else active["stay_id"].isin(
            enrolled.loc[enrolled["enrolled_time"] <= ctx.prediction_time, "stay_id"]).to_numpy()
        rows = score_stays(bundle, spec, inputs.take(np.flatnonzero(keep)), active[keep], ctx.night)
        ctx.write("score", f"risk.{name}", rows)
        ctx.write("score", f"enrolled.{name}", active.loc[keep, ["stay_id"]])
        summary[name] = {"version": bundle.version, "scored": len(rows), "not_in_cohort": int((~keep).sum())}
    return summary


def _risk_rows(ctx: Night, manifest: dict) -> pd.DataFrame:
    """Every promoted model's scored rows of the night (each model's score task wrote one file)."""
    missing = [m for m in manifest["models"] if not ctx.path("score", f"risk.{m}.parquet").exists()]
    if missing:
        raise FileNotFoundError(f"night {ctx.night} has no scores of {', '.join(missing)}: run their score tasks")
    return pd.concat([ctx.read("score", f"risk.{m}") for m in manifest["models"]], ignore_index=True)


def publish_stage(night, settings: Settings | None = None, run_id: str | None = None) -> dict:
    ctx, wh = _context(night, settings, run_id)
    manifest = ctx.manifest()
    risk = _risk_rows(ctx, manifest)
    unreadable = pd.concat([ctx.read("embed", f"failures_{t}") for t in RECORD_TABLES], ignore_index=True)
    quarantine = pd.concat([ctx.read("validate", "quarantine"), unreadable], ignore_index=True)
    excluded = ctx.read("extract", "excluded")
    events = ctx.read("validate", "events")
    records = pd.concat([
        ctx.read("embed", f"records_{t}").assign(modality=MODALITY_OF[t]) for t in RECORD_TABLES
    ], ignore_index=True)
    for column in ("category", "uri", "text"):
        records[column] = records[column] if column in records else None
    unscored = ctx.read("validate", "unscored")
    stored = {"cohort": len(ctx.read("validate", "cohort")) - len(unscored), "events": len(events),
              **{t: int((records["modality"] == MODALITY_OF[t]).sum()) for t in RECORD_TABLES}}
    tonight_ids = {t: set(ctx.read("extract", t)[RECORD_ID[t]].astype(str)) for t in TABLES}
    unreadable_tonight = unreadable.loc[np.array([rid in tonight_ids.get(t, ()) for t, rid in
                                                  zip(unreadable["source_table"], unreadable["record_id"])], bool)]
    quarantined = ctx.read("validate", "rows_quarantined").set_index("source_table")["rows"].add(
        unreadable_tonight.groupby("source_table")["record_id"].nunique(), fill_value=0)
    exclusions = _exclusions(ctx, excluded, unscored)
    counts = accounting(  # a record ingested on an earlier night that fails again is reported, not counted
        records_in=manifest["records_in"],
        used=stored,
        quarantined=quarantined.to_dict(),
        excluded=exclusions.groupby("source_table").size().to_dict(),
    )
    stay_features = _long_features(ctx, manifest)
    results = NightResults(
        night=ctx.night, run_id=manifest["run_id"], prediction_time=ctx.prediction_time,
        started_at=datetime.fromisoformat(manifest["started_at"]), risk=risk, stay_features=stay_features,
        events=events, records=records, quarantine=quarantine.drop_duplicates(), exclusions=exclusions,
        dq=ctx.read("validate", "dq"), counts=counts,
        stays_active=len(_active(ctx)), stays_unscored=len(unscored),
        enrolled={m: len(ctx.read("score", f"enrolled.{m}")) for m in manifest["models"]},
        models={n: i["version"] for n, i in manifest["models"].items()},
    )
    return publish(wh, results)


def _exclusions(ctx: Night, excluded: pd.DataFrame, unscored: pd.DataFrame) -> pd.DataFrame:
    """Every row left out on purpose, with its reason: outside the cohort definition (extract),
    exact duplicates (validate), and stays in the ICU with nothing to score them on."""
    parts = [pd.DataFrame({"source_table": excluded["table"], "record_id": excluded["record_id"],
                           "stay_id": pd.NA, "reason": excluded["reason"]})]
    for table in TABLES:
        duplicates = ctx.read("validate", f"{table}_duplicates")
        parts.append(pd.DataFrame({"source_table": table, "record_id": duplicates[RECORD_ID[table]].astype(str),
                                   "stay_id": duplicates["stay_id"], "reason": "exact duplicate of another row"}))
    parts.append(pd.DataFrame({"source_table": "cohort", "record_id": unscored["stay_id"].astype(str),
                               "stay_id": unscored["stay_id"], "reason": unscored["reason"]}))
    parts = [p for p in parts if not p.empty]
    frame = pd.concat(parts, ignore_index=True) if parts else \
        pd.DataFrame(columns=["source_table", "record_id", "stay_id", "reason"])
    return frame.astype({"source_table": "string", "record_id": "string", "stay_id": "Int64", "reason": "string"})


def _long_features(ctx: Night, manifest: dict) -> pd.DataFrame:
    parts = []
    for name in manifest["models"]:
        wide = ctx.read("features", name)
        numeric = [c for c in wide.columns if c not in KEY and pd.api.types.is_numeric_dtype(wide[c])]
        parts.append(wide.melt(id_vars=KEY, value_vars=numeric, var_name="feature", value_name="value").dropna())
    long = pd.concat(parts, ignore_index=True).drop_duplicates(["stay_id", "feature"])
    return long.assign(night=ctx.night)[["night", "stay_id", "prediction_time", "feature", "value"]]


def report_stage(night, settings: Settings | None = None, run_id: str | None = None) -> dict:
    """The night's report (``report/report.json``), its monitoring rows (``vigil_audit.drift`` and
    ``vigil_audit.performance``, replaced on a re-run) and the alerts it calls for."""
    ctx, wh = _context(night, settings, run_id)
    manifest = ctx.manifest()
    if not wh.scalar("SELECT COUNT(*) FROM vigil_audit.runs WHERE night = :night", {"night": ctx.night}):
        raise NightNotPublished(f"night {ctx.night} has no published run: nothing to report (its publish "
                                f"failed or has not run)")
    risk = wh.read("SELECT * FROM vigil_risk.risk_scores WHERE night = :night", {"night": ctx.night})
    counts = wh.read("SELECT source_table, records_in, used, quarantined, excluded FROM vigil_audit.run_counts "
                     "WHERE night = :night", {"night": ctx.night})
    quarantine = wh.read("SELECT source_table, record_id, reason FROM vigil_audit.quarantine WHERE night = :night",
                         {"night": ctx.night})
    thresholds, reference, drift, performance = {}, {}, [], []
    for name, info in manifest["models"].items():
        bundle = registry.load_bundle(info["artifact_uri"], ctx.settings.home)
        spec = parse_spec(bundle.spec_raw, name)
        thresholds[name] = spec.operating_threshold
        reference[name] = bundle.training.get("held_out_probabilities", [])
        features = tabular_frame(spec, ctx.read("features", name))
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
    with wh.begin() as conn:
        for table, frame in (("vigil_audit.drift", drift), ("vigil_audit.performance", performance)):
            wh.execute(conn, f"DELETE FROM {table} WHERE night = :night", {"night": ctx.night})
            if not frame.empty:
                wh.bulk_insert(conn, table, frame.assign(night=ctx.night))
    ctx.path("report", "report.json").write_text(json.dumps(report, indent=2, default=str))
    for row in report["accounting"]:
        log.info("%(source_table)s: %(records_in)d in = %(used)d used + %(quarantined)d quarantined + "
                 "%(excluded)d excluded", row)
    for name, model in report["models"].items():
        log.info("%s %s: %d stays scored, %d alerts at %.2f, score PSI vs training %s, %d features drifted",
                 name, model["version"], model["stays_scored"], model["alerts_at_threshold"],
                 model["operating_threshold"], model["score_psi_vs_training"], model["features_drifted"])
    alerts = alert_night(wh, ctx.settings, ctx.night, night_alerts(report, ctx.settings))
    return {"report": str(ctx.folder / "report" / "report.json"), "models": list(report["models"]),
            "alerts": len(alerts)}


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
