"""Load PhysioNet/CinC Challenge 2019 records (Reyna et al., Crit Care Med 2020; CC BY 4.0)
into the MIMIC-IV source tables.

Each ``pNNNNNN.psv`` holds one row per ICU hour (``ICULOS`` = 1, 2, ...): 34 vital and lab
columns (NaN = not measured), then Age, Gender, Unit1 (MICU), Unit2 (SICU), HospAdmTime (hours
from hospital to ICU admission) and ``SepsisLabel``. A row summarises its hour, so its values
are charted at the end of that hour (admission + ICULOS h): never earlier than they existed.
The ICU stay ends with the record's last hour. Admissions are placed on the calendar by
patient number, as for PhysioNet 2012.

``SepsisLabel`` follows the challenge's early-warning convention: it is 1 from 6 h before the
clinical onset ``t_sepsis`` (Sepsis-3) onward. The onset is therefore the first labelled hour +
6 h; it is stored as a ``sepsis_onset`` row in ``vigil_features.outcome_events`` (a label, never
a model input).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from pipeline.sources.loading import replace_subject_rows
from pipeline.sources.physionet import DEFAULT_START, admission_times, event_tables, item_map, record_files
from pipeline.store.warehouse import Warehouse

SOURCE = "physionet2019"
STATIC = ("Age", "Gender", "Unit1", "Unit2", "HospAdmTime", "ICULOS", "SepsisLabel")
EARLY_LABEL_HOURS = 6


@dataclass
class SepsisLoad:
    stays: int
    septic: int
    rows: dict[str, int]
    not_loaded: dict[str, int]


def read_records(path: Path) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every hourly row with its patient number, and the files that could not be read, by reason."""
    frames, problems = [], {}
    for name, raw in record_files(path, ".psv"):
        stem = Path(name).stem
        if not (stem[:1] == "p" and stem[1:].isdigit()):
            problems["file name is not pNNNNNN.psv"] = problems.get("file name is not pNNNNNN.psv", 0) + 1
            continue
        try:
            frame = pd.read_csv(io.BytesIO(raw), sep="|")
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
            problems["not a pipe-separated table"] = problems.get("not a pipe-separated table", 0) + 1
            continue
        if not {"ICULOS", "SepsisLabel"} <= set(frame.columns):
            problems["no ICULOS / SepsisLabel columns"] = problems.get("no ICULOS / SepsisLabel columns", 0) + 1
            continue
        frame["record_id"] = int(stem[1:])
        frames.append(frame)
    if not frames:
        raise ValueError(f"{path}: no readable PhysioNet 2019 .psv files")
    return pd.concat(frames, ignore_index=True), problems


def source_tables(rows: pd.DataFrame, items: pd.DataFrame, start: date = DEFAULT_START,
                  days: int = 365) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The MIMIC-IV source rows and the sepsis onsets (``outcome_events`` rows)."""
    first = rows.sort_values(["record_id", "ICULOS"]).groupby("record_id")
    stays = first[["Age", "Gender", "Unit1", "Unit2", "HospAdmTime"]].first()
    stays["hours"] = first["ICULOS"].max()
    stays = stays.reset_index()
    stays["intime"] = admission_times(stays["record_id"], start, days)
    stays["outtime"] = (stays["intime"] + pd.to_timedelta(stays["hours"], unit="h")).astype("datetime64[us]")
    unit = pd.Series(None, index=stays.index, dtype=object)
    unit[stays["Unit2"] == 1] = "Surgical Intensive Care Unit (SICU)"
    unit[stays["Unit1"] == 1] = "Medical Intensive Care Unit (MICU)"
    subject = stays["record_id"]
    tables = {
        "mimiciv_hosp.patients": pd.DataFrame({
            "subject_id": subject, "gender": stays["Gender"].map({0: "F", 1: "M"}),
            "anchor_age": stays["Age"].round().astype("Int64"), "anchor_year": stays["intime"].dt.year,
            "anchor_year_group": None, "dod": None}),
        "mimiciv_hosp.admissions": pd.DataFrame({
            "subject_id": subject, "hadm_id": subject,
            "admittime": (stays["intime"] + pd.to_timedelta(stays["HospAdmTime"].fillna(0).clip(upper=0), unit="h"))
            .dt.round("s"),
            "dischtime": stays["outtime"], "deathtime": pd.NaT, "admission_type": None, "hospital_expire_flag": pd.NA}),
        "mimiciv_icu.icustays": pd.DataFrame({
            "subject_id": subject, "hadm_id": subject, "stay_id": subject, "first_careunit": unit,
            "last_careunit": unit, "intime": stays["intime"], "outtime": stays["outtime"],
            "los": stays["hours"] / 24}),
    }
    measured = [c for c in rows.columns if c in set(items["parameter"])]
    long = rows.melt(id_vars=["record_id", "ICULOS"], value_vars=measured, var_name="parameter",
                     value_name="valuenum").dropna(subset=["valuenum"])
    long = long.merge(items, on="parameter").merge(stays[["record_id", "intime"]], on="record_id")
    long["charttime"] = (long["intime"] + pd.to_timedelta(long["ICULOS"], unit="h")).astype("datetime64[us]")
    long["value_text"] = None
    tables |= event_tables(long.sort_values(["record_id", "charttime", "itemid"], kind="stable"), items)
    labelled = rows[rows["SepsisLabel"] == 1].groupby("record_id")["ICULOS"].min().rename("first_label").reset_index()
    labelled = labelled.merge(stays[["record_id", "intime"]], on="record_id")
    onsets = pd.DataFrame({
        "stay_id": labelled["record_id"].astype("int64"), "outcome": "sepsis_onset",
        "event_time": (labelled["intime"] + pd.to_timedelta(labelled["first_label"] + EARLY_LABEL_HOURS, unit="h"))
        .astype("datetime64[us]")})
    return tables, onsets


def load(wh: Warehouse, records: Path, *, start: date = DEFAULT_START, days: int = 365,
         progress: bool = True) -> SepsisLoad:
    """Replace the records' patients in the warehouse with what the files say."""
    rows, problems = read_records(records)
    tables, onsets = source_tables(rows, item_map(wh, SOURCE), start, days)
    subjects = tables["mimiciv_icu.icustays"]["subject_id"].tolist()
    written = replace_subject_rows(wh, tables | {"vigil_features.outcome_events": onsets}, subjects,
                                   progress=progress, keys={"vigil_features.outcome_events": "stay_id"})
    return SepsisLoad(stays=len(subjects), septic=len(onsets), rows=written, not_loaded=problems)
