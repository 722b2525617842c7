"""A spec's training data: labelled examples (stay, prediction time, label) and their inputs,
built from what the warehouse knew by the training date with the nightly stages' own
functions (the same extraction, great-expectations validation and window features)."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from pipeline.config import Settings
from pipeline.features.windows import KEY, build_features
from pipeline.modality import Modality
from pipeline.modeling.spec import ModelSpec
from pipeline.sources.mimic import Extraction, extract_in_shards, read_enrolment, read_labels
from pipeline.store.warehouse import Warehouse
from pipeline.validate.checks import Validation, enforce_thresholds, validate


@dataclass
class TrainingSet:
    examples: pd.DataFrame        # stay_id, subject_id, prediction_time, label
    features: pd.DataFrame
    records: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    snapshot: dict               # rows read per source table and the latest arrival: what the version saw


def training_set(wh: Warehouse, settings: Settings, spec: ModelSpec, as_of: datetime) -> TrainingSet:
    """Labelled examples (see :func:`labelled_examples`) and their features, from data known by ``as_of``.

    History is read in shards of subjects (about ``VIGIL_SHARD_ROWS`` event rows each): each
    shard is extracted, validated and windowed on its own and keeps only its examples' features
    and records, so memory follows the shard, not the history. Outcomes are read once; the
    failure-rate thresholds judge the sums over all shards. Records come in (stay, time, id)
    order, whatever the shards and the warehouse's physical row order.
    """
    labels, enrolled = read_outcomes(wh, spec, as_of)
    with closing(extract_in_shards(wh, as_of, settings.shard_rows)) as shards:   # its split files go either way
        parts = [_shard_part(extraction, spec, as_of, labels, enrolled) for _, extraction in shards]
    counted = Validation.counted([part.validation for part in parts])
    enforce_thresholds(counted, settings.failure_rate_limit, settings.failure_rate_min_rows)
    examples = pd.concat([part.examples for part in parts], ignore_index=True).sort_values(KEY, ignore_index=True)
    if examples["label"].nunique() < 2:
        raise ValueError(f"{spec.name}: the training examples known by {as_of} hold only one label class "
                         f"({len(examples)} examples); load more data or move the training date later")
    if spec.task == "multiclass" and not examples["label"].between(0, len(spec.classes) - 1).all():
        bad = sorted(set(examples["label"]) - set(range(len(spec.classes))))
        raise ValueError(f"{spec.name}: label query {spec.label_query} returned label(s) {bad}, outside the "
                         f"{len(spec.classes)} classes of label.classes")
    features = examples[KEY].merge(pd.concat([part.features for part in parts], ignore_index=True), on=KEY, how="left")
    records = {m: _in_stay_order(pd.concat([part.records[m] for part in parts], ignore_index=True))
               for m in parts[0].records}
    columns = ["stay_id", "subject_id", "prediction_time", "label"] + (["days"] if spec.task == "survival" else [])
    latest = [part.latest_arrival for part in parts if part.latest_arrival is not None]
    rows = {table: sum(part.rows[table] for part in parts) for table in parts[0].rows}
    snapshot = {"as_of": str(as_of), "rows": rows, "latest_arrival": str(max(latest)) if latest else None,
                "examples": int(len(examples)), "patients": int(examples["subject_id"].nunique())}
    return TrainingSet(examples=examples[columns], features=features, records=records,
                       quarantine=counted.quarantine(), snapshot=snapshot)


def _in_stay_order(records: pd.DataFrame) -> pd.DataFrame:
    key = "source_row_id" if "source_row_id" in records else "record_id"
    return records.sort_values(["stay_id", "time", key], kind="stable", ignore_index=True)


@dataclass
class _ShardPart:
    """What one shard of history contributes to a training set."""

    examples: pd.DataFrame
    features: pd.DataFrame
    records: dict[str, pd.DataFrame]
    validation: Validation        # counts and quarantine only
    rows: dict[str, int]
    latest_arrival: pd.Timestamp | None


def _shard_part(extraction: Extraction, spec: ModelSpec, as_of: datetime,
                labels: pd.DataFrame, enrolled: pd.DataFrame | None) -> _ShardPart:
    validation = validate(extraction.frames, as_of, extraction.quarantined)
    cohort = validation.valid("cohort")
    examples = labelled_examples(cohort, spec, labels, enrolled)
    features = build_features(validation.valid("events"), cohort, examples[KEY], spec.window_spec)
    records = {}
    for m in spec.used_modalities():
        source = spec.source(m)
        if source not in ("tabular", "rendered"):  # the examples' stays' records only (not other cohorts')
            table = validation.valid("events") if source == "events" else \
                spec.modality_records(m, validation.valid(Modality(source).table))
            records[m] = table[table["stay_id"].isin(examples["stay_id"])]
    latest = [frame["arrival_time"].max() for frame in extraction.frames.values()
              if "arrival_time" in frame and len(frame)]
    return _ShardPart(examples=examples, features=features, records=records,
                      validation=Validation.counted([validation]),
                      rows={t: int(len(f)) for t, f in extraction.frames.items()},
                      latest_arrival=max(latest) if latest else None)


def targets(spec: ModelSpec, examples: pd.DataFrame) -> np.ndarray:
    """What the candidates fit: the class index, or for survival ``(rows, 2)`` of (days, event)."""
    if spec.task == "survival":
        return np.column_stack([examples["days"].to_numpy(float), examples["label"].to_numpy(float)])
    return examples["label"].to_numpy().astype(int)


def read_outcomes(wh: Warehouse, spec: ModelSpec, as_of: datetime) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The spec's outcome labels known by ``as_of``, and its cohort query's enrolment (None: every stay)."""
    contract = ("survival_labels" if spec.task == "survival"
                else "event_labels" if spec.label_kind == "event_within" else "labels")
    labels = read_labels(wh, spec.label_query, as_of, contract).drop(columns=["subject_id"])
    return labels, read_enrolment(wh, spec.cohort_query, as_of)


def labelled_examples(cohort: pd.DataFrame, spec: ModelSpec, labels: pd.DataFrame,
                      enrolled: pd.DataFrame | None) -> pd.DataFrame:
    """The spec's training examples: (stay, prediction time, label) for adult stays whose outcome
    was known by ``as_of`` and that were still in the ICU, outcome unknown, at prediction time.

    ``offset``: one example per stay at admission + offset. ``nightly``: one at every midnight
    of the stay (as the nightly run scores), up to the event; an ``event_within`` label is 1 when
    the event follows within the horizon.
    """
    examples = cohort.merge(labels, on="stay_id")
    if enrolled is not None:
        examples = examples.merge(enrolled, on="stay_id")
    examples = examples[(examples["age"] >= spec.min_age) & examples["discharge_time"].notna()]
    if spec.prediction_schedule == "offset":
        examples = examples.assign(prediction_time=examples["admit_time"] + pd.Timedelta(hours=spec.prediction_offset_hours))
    else:
        first = examples["admit_time"].dt.floor("D") + pd.Timedelta(days=1)
        nights = ((examples["discharge_time"] - first) // pd.Timedelta(days=1)).clip(lower=-1).astype(int) + 1
        examples = examples.loc[examples.index.repeat(nights)].copy()
        examples["prediction_time"] = (first.loc[examples.index]
                                       + pd.to_timedelta(examples.groupby(level=0).cumcount(), unit="D"))
    examples = examples[(examples["discharge_time"] > examples["prediction_time"])      # still in the ICU then
                        & (examples["label_known_time"] > examples["prediction_time"])]  # outcome not yet known
    if enrolled is not None:
        examples = examples[examples["enrolled_time"] <= examples["prediction_time"]]
    if spec.task == "survival":  # time from the prediction to the event or censoring, in days
        examples = examples.assign(label=examples["event"],
                                   days=(examples["event_time"] - examples["prediction_time"]) / pd.Timedelta(days=1))
        examples = examples[examples["days"] > 0]
    if spec.label_kind == "event_within":
        examples = examples[~(examples["event_time"] <= examples["prediction_time"])]   # not after the event
        horizon = examples["prediction_time"] + pd.Timedelta(hours=spec.horizon_hours)
        examples = examples.assign(label=(examples["event_time"] <= horizon).astype("int64"))
    return examples.sort_values(["stay_id", "prediction_time"]).reset_index(drop=True)
