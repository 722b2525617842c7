"""Load PhysioNet/CinC Challenge 2012 records (Silva et al., CinC 2012; ODC-By 1.0) into the
MIMIC-IV source tables, so extraction, validation, features and models run unchanged.

Each record file holds ``Time,Parameter,Value`` rows over the first 48 h of one ICU stay, the
first rows static (RecordID, Age, Gender, Height, ICUType, Weight; -1 = unknown). The records
carry no dates: each ICU admission is placed on a day of the year from ``start`` by its
RecordID (``--start``/``--days`` move them), so a night sees a realistic mix of stays. Where the
parameters go is ``sql/concepts/physionet_items.sql`` (loaded by ``vigil init``).

Outcomes (``Outcomes-a.txt``: RecordID, SAPS-I, SOFA, Length_of_stay, Survival,
In-hospital_death) give the hospital discharge and death. They are whole days from ICU admission
and the challenge kept only stays of at least 48 h, so a discharge or death the day count would
put before the last recorded observation is placed one hour after it (and never before 49 h); an
unknown length of stay (-1) is treated the same way. SAPS-I and SOFA go to
``vigil_features.reference_scores`` as evaluation baselines, never model inputs.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.sources.loading import replace_subject_rows
from pipeline.sources.physionet import DEFAULT_START, admission_times, event_tables, item_map, record_files
from pipeline.store.warehouse import Warehouse

SOURCE = "physionet2012"
STATIC = ("RecordID", "Age", "Gender", "ICUType")
ICU_TYPES = {1: "Coronary Care Unit (CCU)", 2: "Cardiac Vascular Intensive Care Unit (CVICU)",
             3: "Medical Intensive Care Unit (MICU)", 4: "Surgical Intensive Care Unit (SICU)"}
_TIME = re.compile(r"^(\d{1,3}):(\d{2})$")


@dataclass
class RecordSet:
    """The parsed rows of a set of record files, plus what could not be read and why."""

    rows: pd.DataFrame                      # record_id, minutes, parameter, value_text, valuenum
    problems: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["file", "reason"]))


@dataclass
class PhysioNetLoad:
    stays: int
    rows: dict[str, int]
    not_loaded: dict[str, int]              # reason -> rows (or files) that could not be loaded
    deaths: int | None = None


def read_records(path: Path) -> RecordSet:
    """Every record file's rows, long format. A file without a usable RecordID, or that is not
    ``Time,Parameter,Value`` text, is reported in ``problems`` and skipped whole."""
    frames, problems = [], []
    for name, raw in record_files(path, ".txt"):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append((name, "not UTF-8 text"))
            continue
        lines = text.splitlines()
        if not lines or lines[0].strip().replace(" ", "") != "Time,Parameter,Value":
            problems.append((name, "no 'Time,Parameter,Value' header"))
            continue
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, on_bad_lines="skip")
        record = frame.loc[frame["Parameter"] == "RecordID", "Value"]
        record_id = pd.to_numeric(record.iloc[0], errors="coerce") if len(record) else np.nan
        if np.isnan(record_id) and Path(name).stem.isdigit():
            record_id = int(Path(name).stem)
        if np.isnan(record_id):
            problems.append((name, "no RecordID"))
            continue
        frame["record_id"] = int(record_id)
        frame["file"] = name
        frames.append(frame)
    if not frames:
        raise ValueError(f"{path}: no readable PhysioNet 2012 record files")
    rows = pd.concat(frames, ignore_index=True).sort_values(["record_id"], kind="stable", ignore_index=True)
    clock = rows["Time"].str.strip().str.extract(_TIME).astype(float)
    rows["minutes"] = clock[0] * 60 + clock[1]
    rows["parameter"] = rows["Parameter"].str.strip()
    rows["value_text"] = rows["Value"].str.strip()
    rows["valuenum"] = pd.to_numeric(rows["value_text"], errors="coerce")
    return RecordSet(rows=rows[["record_id", "file", "minutes", "parameter", "value_text", "valuenum"]],
                     problems=pd.DataFrame(problems, columns=["file", "reason"]))


def read_outcomes(path: Path) -> pd.DataFrame:
    outcomes = pd.read_csv(path)
    outcomes.columns = [c.strip() for c in outcomes.columns]
    needed = {"RecordID", "Length_of_stay", "Survival", "In-hospital_death"}
    if not needed <= set(outcomes.columns):
        raise ValueError(f"{path}: an outcomes file needs the columns {sorted(needed)}, found {list(outcomes.columns)}")
    return outcomes


def _statics(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per record: its Age, Gender and ICUType (NaN where absent)."""
    static = rows[rows["parameter"].isin(STATIC[1:])].pivot_table(
        index="record_id", columns="parameter", values="valuenum", aggfunc="first")
    every = pd.Index(sorted(rows["record_id"].unique()), name="record_id")
    return static.reindex(index=every, columns=list(STATIC[1:])).reset_index()


def source_tables(records: RecordSet, items: pd.DataFrame, outcomes: pd.DataFrame | None,
                  start: date = DEFAULT_START, days: int = 365) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """The MIMIC-IV source rows for the records, and the rows that cannot be loaded, by reason."""
    rows = records.rows
    not_loaded = {f"file skipped: {r}": int(n) for r, n in records.problems["reason"].value_counts().items()}
    static = _statics(rows)
    stays = pd.DataFrame({"record_id": static["record_id"].astype("int64")})
    stays["intime"] = admission_times(stays["record_id"], start, days)
    series = rows[~rows["parameter"].isin(STATIC)]
    untimed = series["minutes"].isna()
    if untimed.any():
        not_loaded["time is not HH:MM"] = int(untimed.sum())
    unknown = ~series["parameter"].isin(items["parameter"]) & ~untimed
    for parameter, n in series.loc[unknown, "parameter"].value_counts().items():
        not_loaded[f"parameter not in source_item_map: {parameter}"] = int(n)
    absent = series["value_text"].isin(["-1", ""]) & series["parameter"].isin(["Weight", "Height"])
    if absent.any():
        not_loaded["Weight/Height -1 (unknown)"] = int(absent.sum())
    series = series[~untimed & ~unknown & ~absent].merge(items, on="parameter").merge(stays, on="record_id")
    series["charttime"] = (series["intime"] + pd.to_timedelta(series["minutes"], unit="min")).astype("datetime64[us]")

    last_seen = series.groupby("record_id")["charttime"].max()
    stays["last_seen"] = stays["record_id"].map(last_seen).fillna(stays["intime"])
    earliest_end = np.maximum(stays["last_seen"] + pd.Timedelta(hours=1), stays["intime"] + pd.Timedelta(hours=49))
    stays["dischtime"] = pd.NaT
    stays["deathtime"] = pd.NaT
    stays["expire"] = pd.NA
    if outcomes is not None:
        known = stays.merge(outcomes, left_on="record_id", right_on="RecordID", how="left")
        los = known["Length_of_stay"].where(known["Length_of_stay"] >= 0)
        survival = known["Survival"].where(known["Survival"] >= 0)
        died = known["In-hospital_death"] == 1
        days = los.where(~died, survival.fillna(los))
        end = known["intime"] + pd.to_timedelta(days, unit="D")
        has_outcome = known["RecordID"].notna()
        stays["dischtime"] = end.where(end > earliest_end, earliest_end).where(has_outcome)
        stays["deathtime"] = stays["dischtime"].where(died)
        stays["expire"] = known["In-hospital_death"].astype("Int64")
        if (~has_outcome).any():
            not_loaded["records without an outcome (loaded, outcome unknown)"] = int((~has_outcome).sum())

    ages = static["Age"].where(static["Age"] >= 0)
    gender = static["Gender"].map({0.0: "F", 1.0: "M"})
    subject = stays["record_id"]
    tables = {
        "mimiciv_hosp.patients": pd.DataFrame({
            "subject_id": subject, "gender": gender.values, "anchor_age": ages.round().astype("Int64").values,
            "anchor_year": stays["intime"].dt.year.values, "anchor_year_group": None, "dod": None}),
        "mimiciv_hosp.admissions": pd.DataFrame({
            "subject_id": subject, "hadm_id": subject, "admittime": stays["intime"], "dischtime": stays["dischtime"],
            "deathtime": stays["deathtime"], "admission_type": None, "hospital_expire_flag": stays["expire"]}),
        "mimiciv_icu.icustays": pd.DataFrame({
            "subject_id": subject, "hadm_id": subject, "stay_id": subject,
            "first_careunit": static["ICUType"].map(ICU_TYPES).values, "last_careunit": static["ICUType"].map(ICU_TYPES).values,
            "intime": stays["intime"], "outtime": stays["dischtime"],
            "los": (stays["dischtime"] - stays["intime"]).dt.total_seconds() / 86400}),
    }
    tables |= event_tables(series, items)
    if outcomes is not None:
        scores = outcomes[outcomes["RecordID"].isin(stays["record_id"])]
        score_columns = [c for c in ("SAPS-I", "SOFA") if c in scores]
        melted = scores.melt(id_vars="RecordID", value_vars=score_columns, var_name="score", value_name="value")
        tables["vigil_features.reference_scores"] = pd.DataFrame({
            "stay_id": melted["RecordID"].astype("int64"), "score": melted["score"],
            "value": melted["value"].where(melted["value"] >= 0)})
    return tables, not_loaded


def load(wh: Warehouse, records: Path, outcomes: Path | None = None, *, start: date = DEFAULT_START,
         days: int = 365, progress: bool = True) -> PhysioNetLoad:
    """Replace the records' patients in the warehouse with what the files say."""
    parsed = read_records(records)
    outcome_frame = read_outcomes(outcomes) if outcomes is not None else None
    tables, not_loaded = source_tables(parsed, item_map(wh, SOURCE), outcome_frame, start, days)
    subjects = tables["mimiciv_icu.icustays"]["subject_id"].tolist()
    written = replace_subject_rows(wh, tables, subjects, progress=progress,
                                   keys={"vigil_features.reference_scores": "stay_id"})
    deaths = None if outcome_frame is None else int(tables["mimiciv_hosp.admissions"]["hospital_expire_flag"].sum())
    return PhysioNetLoad(stays=len(subjects), rows=written, not_loaded=not_loaded, deaths=deaths)

