"""Load the real MIMIC-IV Clinical Database Demo (v2.2, ODbL) into the MIMIC source tables.

The demo ships ``hosp/`` and ``icu/`` CSVs but no ``chartevents``; its charted vitals come from
the MEDS export of the same 100 patients (``mimic-iv-demo-meds/events.parquet``), whose codes
``LAB//<itemid>//<unit>`` carry the MIMIC item id. MEDS drops stay ids, so each charted row is
placed in the ICU stay whose [intime, outtime] holds it; rows outside every stay are counted
and not loaded (chartevents only holds ICU rows).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.sources.loading import replace_subject_rows
from pipeline.sources.mimic import assign_stays
from pipeline.store.warehouse import Warehouse

CSV_TABLES = {
    "mimiciv_hosp.patients": ("hosp/patients.csv.gz", ("dod",)),
    "mimiciv_hosp.admissions": ("hosp/admissions.csv.gz", ("admittime", "dischtime", "deathtime", "edregtime", "edouttime")),
    "mimiciv_hosp.d_labitems": ("hosp/d_labitems.csv.gz", ()),
    "mimiciv_hosp.labevents": ("hosp/labevents.csv.gz", ("charttime", "storetime")),
    "mimiciv_icu.icustays": ("icu/icustays.csv.gz", ("intime", "outtime")),
    "mimiciv_icu.d_items": ("icu/d_items.csv.gz", ()),
    "mimiciv_icu.outputevents": ("icu/outputevents.csv.gz", ("charttime", "storetime")),
    "mimiciv_icu.inputevents": ("icu/inputevents.csv.gz", ("starttime", "endtime", "storetime")),
    "mimiciv_hosp.prescriptions": ("hosp/prescriptions.csv.gz", ("starttime", "stoptime")),
    "mimiciv_hosp.microbiologyevents": ("hosp/microbiologyevents.csv.gz",
                                        ("chartdate", "charttime", "storedate", "storetime")),
}
# Codes and free text that pandas would otherwise read as numbers (an NDC loses its leading zeros).
TEXT_COLUMNS = {"mimiciv_hosp.prescriptions": ("poe_id", "order_provider_id", "gsn", "ndc", "formulary_drug_cd",
                                               "prod_strength", "dose_val_rx", "form_val_disp"),
                "mimiciv_hosp.microbiologyevents": ("order_provider_id", "quantity", "dilution_text", "comments")}


@dataclass
class DemoLoad:
    rows: dict[str, int]
    meds_rows_outside_stays: int
    checksums_verified: int


def verify_checksums(root: Path, files: list[str]) -> int:
    """Check the files against the release's ``SHA256SUMS.txt``; the number verified."""
    sums_file = root / "SHA256SUMS.txt"
    if not sums_file.exists():
        return 0
    expected = {}
    for line in sums_file.read_text().splitlines():
        digest, _, name = line.partition(" ")
        expected[name.strip().lstrip("*")] = digest
    verified = 0
    for name in files:
        if name in expected:
            actual = hashlib.sha256((root / name).read_bytes()).hexdigest()
            if actual != expected[name]:
                raise ValueError(f"{root / name} does not match SHA256SUMS.txt (corrupt or modified copy)")
            verified += 1
    return verified


def read_meds_vitals(meds_path: Path, icustays: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Charted ICU items (item id >= 220000) from the MEDS parquet as chartevents rows."""
    meds = pd.read_parquet(meds_path, columns=["subject_id", "time", "code", "value"])
    meds = meds[meds["code"].str.startswith("LAB//22")]
    parts = meds["code"].str.split("//", expand=True)
    chart = pd.DataFrame({
        "subject_id": meds["subject_id"].astype("int64").values,
        "time": pd.to_datetime(meds["time"]).astype("datetime64[us]").values,
        "itemid": parts[1].astype("int64").values,
        "valuenum": meds["value"].astype("float64").values,
        "valueuom": parts[2].replace({"UNK": None}).values,
    })
    spans = icustays.rename(columns={"intime": "admit_time"})
    spans["span_start"] = spans["admit_time"]
    spans["span_end"] = spans["outtime"]
    chart["row_key"] = range(len(chart))
    chart["stay_id"] = assign_stays(chart, spans, "row_key")
    outside = int(chart["stay_id"].isna().sum())
    chart = chart[chart["stay_id"].notna()].merge(icustays[["stay_id", "hadm_id"]], on="stay_id")
    chart["value"] = chart["valuenum"].map(lambda v: None if pd.isna(v) else f"{v:g}")
    chart = chart.rename(columns={"time": "charttime"}).drop(columns=["row_key"])
    return chart, outside


def load(wh: Warehouse, root: Path, meds_path: Path | None = None, progress: bool = True) -> DemoLoad:
    root = Path(root)
    if not (root / "hosp" / "patients.csv.gz").exists():
        raise FileNotFoundError(f"{root} is not a MIMIC-IV demo folder (no hosp/patients.csv.gz)")
    checked = verify_checksums(root, [f for f, _ in CSV_TABLES.values()])
    tables: dict[str, pd.DataFrame] = {}
    for table, (name, times) in CSV_TABLES.items():
        frame = pd.read_csv(root / name, low_memory=False, dtype=dict.fromkeys(TEXT_COLUMNS.get(table, ()), str))
        for column in times:
            frame[column] = pd.to_datetime(frame[column], format="ISO8601")
        tables[table] = frame
    outside = 0
    if meds_path is None:
        candidate = root.parent / "mimic-iv-demo-meds" / "events.parquet"
        meds_path = candidate if candidate.exists() else None
    if meds_path is not None:
        tables["mimiciv_icu.chartevents"], outside = read_meds_vitals(meds_path, tables["mimiciv_icu.icustays"])
    subjects = tables["mimiciv_hosp.patients"]["subject_id"].tolist()
    rows = replace_subject_rows(wh, tables, subjects, progress=progress)
    return DemoLoad(rows=rows, meds_rows_outside_stays=outside, checksums_verified=checked)
