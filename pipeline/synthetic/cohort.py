"""A seeded, multimodal synthetic ICU cohort in the MIMIC-IV source layouts.

Each stay has four independent latent risk factors, one per modality: labs/vitals, ECG,
chest imaging and note text. In-hospital death depends on all four, so a model that fuses the
modalities can beat one that sees only the tabular data. Admissions spread over ``days``, and
every row carries the time it arrived, so consecutive nights find new data.

Synthetic ids live in reserved ranges (subjects from 90,000,000) and ``write`` replaces only
those, so synthesising into a warehouse never touches real rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb
from tqdm import tqdm

from pipeline.synthetic import ecg as ecg_synth
from pipeline.synthetic import imaging, notes
from pipeline.synthetic.sepsis import sepsis_inputs

SUBJECT_BASE = 90_000_000
HADM_BASE = 91_000_000
STAY_BASE = 92_000_000
ECG_STUDY_BASE = 93_000_000
CXR_STUDY_BASE = 94_000_000
LABEVENT_BASE = 950_000_000

FIRST_NAMES = ("Ada", "Brook", "Carmen", "Dmitri", "Esther", "Farid", "Greta", "Hiro", "Ines", "Jonas")
LAST_NAMES = ("Quillfeather", "Marrowby", "Thistlewood", "Okonkwo-Reyes", "Vasquez-Lind", "Haverbrook")

# (itemid, unit, base, per-unit-of-risk, per-stay sd, per-reading sd); MAP drives SBP/DBP
VITALS = {
    "heart_rate": (220045, "bpm", 84.0, 9.0, 7.0, 5.0),
    "resp_rate": (220210, "insp/min", 18.0, 2.5, 2.0, 2.0),
    "spo2": (220277, "%", 96.5, -1.3, 1.0, 1.0),
    "mbp": (220181, "mmHg", 80.0, -6.0, 6.0, 5.0),
}
LABS = {  # (itemid, unit, base, per-unit-of-risk, per-stay sd, per-reading sd, log-normal?)
    "lactate": (50813, "mmol/L", 0.35, 0.30, 0.20, 0.15, True),
    "creatinine": (50912, "mg/dL", 0.05, 0.28, 0.30, 0.08, True),
    "bun": (51006, "mg/dL", 3.0, 0.25, 0.30, 0.08, True),
    "wbc": (51301, "K/uL", 9.5, 2.5, 2.0, 1.0, False),
    "hemoglobin": (51222, "g/dL", 11.0, -0.7, 1.0, 0.4, False),
    "platelets": (51265, "K/uL", 220.0, -35.0, 50.0, 15.0, False),
    "sodium": (50983, "mEq/L", 139.0, 0.0, 3.0, 1.5, False),
    "potassium": (50971, "mEq/L", 4.1, 0.1, 0.3, 0.2, False),
    "bicarbonate": (50882, "mEq/L", 24.0, -1.8, 2.0, 1.0, False),
    "glucose": (50931, "mg/dL", 130.0, 12.0, 20.0, 15.0, False),
}


@dataclass
class SyntheticCohort:
    tables: dict[str, pd.DataFrame]
    ecg_jobs: list[dict] = field(default_factory=list)
    image_jobs: list[dict] = field(default_factory=list)
    latent: dict[str, np.ndarray] = field(default_factory=dict)   # per-stay latent risks, by modality

    @property
    def n_stays(self) -> int:
        return len(self.tables["mimiciv_icu.icustays"])


def _ts(values) -> pd.Series:
    return pd.Series(pd.to_datetime(values)).dt.floor("s")


def generate(n_stays: int = 2000, start: datetime = datetime(2026, 1, 1), days: int = 60,
             seed: int = 7, bad_row_rate: float = 0.003, *, id_offset: int = 0, died=None,
             image_rate: float = 0.75) -> SyntheticCohort:
    """Build the cohort's tables (and the ECG / image files to write) deterministically.

    ``id_offset`` shifts every id (a second cohort beside the first); ``died``, given the latent
    risks and ages, decides in-hospital death instead of the default mix of all four."""
    rng = np.random.default_rng(seed)
    n = n_stays
    subject = SUBJECT_BASE + id_offset + np.arange(n)
    # some patients have two ICU stays, drawn independently: an earlier stay that is still open when
    # the later one begins is the feed error a night quarantines ("still open while a later ICU stay
    # of the same patient began"), as a hospital's ADT feed produces when a transfer is not closed
    readmitted = np.flatnonzero(rng.uniform(size=n) < 0.08)
    subject[readmitted] = subject[rng.integers(0, n, len(readmitted))]
    stay_id = STAY_BASE + id_offset + np.arange(n)
    hadm_id = HADM_BASE + id_offset + np.arange(n)
    risk = {m: rng.normal(size=n) for m in ("tabular", "ecg", "image", "text")}
    age = np.clip(rng.normal(64, 15, n), 18, 95).round()
    sex = np.where(rng.uniform(size=n) < 0.45, "F", "M")
    logit = (-2.6 + 1.2 * risk["tabular"] + 1.0 * risk["ecg"] + 1.0 * risk["image"] + 1.0 * risk["text"]
             + 0.35 * (age - 64) / 15)
    died = rng.uniform(size=n) < 1 / (1 + np.exp(-logit)) if died is None else np.asarray(died(risk, age), bool)

    intime = pd.Timestamp(start) + pd.to_timedelta(rng.uniform(0, days, n), unit="D")
    los_days = np.clip(rng.lognormal(1.0, 0.6, n), 0.3, 20)
    outtime = intime + pd.to_timedelta(los_days, unit="D")
    admittime = intime - pd.to_timedelta(rng.uniform(1, 12, n), unit="h")
    dischtime = outtime + pd.to_timedelta(np.where(died, 0, rng.uniform(1, 5, n)), unit="D")
    anchor_year = intime.year.values - rng.integers(0, 3, n)
    anchor_age = age - (intime.year.values - anchor_year)
    broken_cohort = rng.uniform(size=n) < bad_row_rate / 2
    anchor_age = np.where(broken_cohort, -anchor_age, anchor_age)  # impossible ages to quarantine

    tables: dict[str, pd.DataFrame] = {}
    subjects = np.unique(subject)
    first_of = pd.Series(np.arange(n), index=subject).groupby(level=0).first()
    tables["mimiciv_hosp.patients"] = pd.DataFrame({
        "subject_id": subjects,
        "gender": sex[first_of.loc[subjects].values],
        "anchor_age": anchor_age[first_of.loc[subjects].values].astype(int),
        "anchor_year": anchor_year[first_of.loc[subjects].values].astype(int),
        "anchor_year_group": "2020 - 2022",
        "dod": pd.NaT,
    })
    tables["mimiciv_hosp.admissions"] = pd.DataFrame({
        "subject_id": subject, "hadm_id": hadm_id,
        "admittime": _ts(admittime), "dischtime": _ts(dischtime),
        "deathtime": _ts(np.where(died, dischtime, pd.NaT)),
        "admission_type": rng.choice(["EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT"], n, p=[.6, .2, .1, .1]),
        "admission_location": "EMERGENCY ROOM", "discharge_location": np.where(died, "DIED", "HOME"),
        "hospital_expire_flag": died.astype(int),
    })
    units = rng.choice(["Medical Intensive Care Unit (MICU)", "Surgical Intensive Care Unit (SICU)",
                        "Cardiac Vascular Intensive Care Unit (CVICU)", "Trauma SICU (TSICU)"], n)
    tables["mimiciv_icu.icustays"] = pd.DataFrame({
        "subject_id": subject, "hadm_id": hadm_id, "stay_id": stay_id,
        "first_careunit": units, "last_careunit": units,
        "intime": _ts(intime), "outtime": _ts(outtime), "los": los_days,
    })

    chart = _vitals(rng, subject, hadm_id, stay_id, intime, los_days, risk["tabular"])
    labs = _labs(rng, subject, hadm_id, intime, los_days, risk["tabular"], LABEVENT_BASE + 100 * id_offset)
    chart, labs = _inject_bad_rows(rng, chart, labs, bad_row_rate)
    tables["mimiciv_icu.chartevents"] = chart
    tables["mimiciv_hosp.labevents"] = labs
    tables["mimiciv_icu.d_items"] = pd.DataFrame({
        "itemid": [220045, 220210, 220277, 220181, 220179, 220180, 223761, 220739, 223900, 223901, 227969],
        "label": ["Heart Rate", "Respiratory Rate", "O2 saturation pulseoxymetry",
                  "Non Invasive Blood Pressure mean", "Non Invasive Blood Pressure systolic",
                  "Non Invasive Blood Pressure diastolic", "Temperature Fahrenheit", "GCS - Eye Opening",
                  "GCS - Verbal Response", "GCS - Motor Response", "Safety Measures"],
        "linksto": "chartevents",
    })
    tables["mimiciv_hosp.d_labitems"] = pd.DataFrame({
        "itemid": [v[0] for v in LABS.values()], "label": list(LABS), "fluid": "Blood", "category": "Chemistry",
    })

    stays = tables["mimiciv_icu.icustays"].assign(los_days=los_days)
    first_id = LABEVENT_BASE + 100 * id_offset + 5_000_000   # after the base cohort's labs
    for table, rows in sepsis_inputs(np.random.default_rng([seed, 3]), stays, risk["tabular"], first_id).items():
        tables[table] = pd.concat([tables[table], rows], ignore_index=True) if table in tables else rows

    radiology, discharge = _notes(rng, subject, hadm_id, intime, los_days, dischtime, died, risk["text"])
    tables["mimiciv_note.radiology"] = radiology
    tables["mimiciv_note.discharge"] = discharge

    cohort = SyntheticCohort(tables=tables, latent=risk | {"age": age, "intime": intime.values,
                                                           "outtime": outtime.values, "died": died})
    _ecgs(rng, cohort, subject, intime, los_days, risk["ecg"], risk["tabular"], id_offset)
    _images(rng, cohort, subject, intime, los_days, risk["image"], id_offset, image_rate)
    return cohort


def _slots(rng, intime, los_days, every_hours: float, jitter_minutes: float):
    """Measurement times every ``every_hours`` over each stay: (stay index, time) arrays."""
    counts = np.maximum(1, np.floor(los_days * 24 / every_hours).astype(int))
    index = np.repeat(np.arange(len(counts)), counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    offsets = within * every_hours * 3600 + rng.uniform(0, jitter_minutes * 60, len(index))
    times = intime.values[index] + offsets.astype("timedelta64[s]")
    return index, pd.Series(times).dt.floor("s")


def _vitals(rng, subject, hadm_id, stay_id, intime, los_days, risk) -> pd.DataFrame:
    index, times = _slots(rng, intime, los_days, 2.0, 30)
    frames = []

    def add(itemid, unit, values, rows=slice(None)):
        frames.append(pd.DataFrame({
            "subject_id": subject[index][rows], "hadm_id": hadm_id[index][rows], "stay_id": stay_id[index][rows],
            "charttime": times.values[rows], "itemid": itemid, "valuenum": np.round(values[rows], 1), "valueuom": unit,
        }))

    readings = {}
    for name, (itemid, unit, base, slope, stay_sd, sd) in VITALS.items():
        offset = rng.normal(0, stay_sd, len(subject))
        readings[name] = base + slope * risk[index] + offset[index] + rng.normal(0, sd, len(index))
        if name == "spo2":
            readings[name] = np.minimum(readings[name], 100)
        add(itemid, unit, readings[name])
    add(220179, "mmHg", readings["mbp"] + 27 + rng.normal(0, 5, len(index)))
    add(220180, "mmHg", readings["mbp"] - 13 + rng.normal(0, 4, len(index)))
    four_hourly = (np.arange(len(index)) % 2) == 0
    add(223761, "°F", 98.4 + 0.5 * risk[index] + rng.normal(0, 0.6, len(index)), four_hourly)
    depressed = np.maximum(0, risk[index] + rng.normal(0, 0.8, len(index)))
    add(220739, None, np.clip(4 - np.round(depressed), 1, 4), four_hourly)
    add(223900, None, np.clip(5 - np.round(1.3 * depressed), 1, 5), four_hourly)
    add(223901, None, np.clip(6 - np.round(1.2 * depressed), 1, 6), four_hourly)
    chart = pd.concat(frames, ignore_index=True)
    chart["storetime"] = chart["charttime"] + pd.to_timedelta(rng.uniform(1, 40, len(chart)).round(), unit="m")
    chart["value"] = chart["valuenum"].map(lambda v: f"{v:g}")
    chart["caregiver_id"] = pd.NA
    chart["warning"] = 0
    return chart


def _labs(rng, subject, hadm_id, intime, los_days, risk, first_id: int = LABEVENT_BASE) -> pd.DataFrame:
    index, times = _slots(rng, intime, los_days, 8.0, 90)
    frames = []
    for name, (itemid, unit, base, slope, stay_sd, sd, lognormal) in LABS.items():
        offset = rng.normal(0, stay_sd, len(subject))
        value = base + slope * risk[index] + offset[index] + rng.normal(0, sd, len(index))
        value = np.exp(value) if lognormal else np.maximum(value, 0.1)
        frames.append(pd.DataFrame({
            "subject_id": subject[index], "hadm_id": hadm_id[index], "itemid": itemid,
            "charttime": times.values, "valuenum": np.round(value, 2), "valueuom": unit,
        }))
    labs = pd.concat(frames, ignore_index=True)
    labs["storetime"] = labs["charttime"] + pd.to_timedelta(rng.uniform(30, 180, len(labs)).round(), unit="m")
    labs["value"] = labs["valuenum"].map(lambda v: f"{v:g}")
    labs["specimen_id"] = labs.groupby(["subject_id", "charttime"]).ngroup() + 70_000_000
    labs["priority"] = "STAT"
    labs = labs.sort_values(["charttime", "itemid"], kind="stable").reset_index(drop=True)
    labs.insert(0, "labevent_id", first_id + np.arange(len(labs)))
    return labs


def _inject_bad_rows(rng, chart: pd.DataFrame, labs: pd.DataFrame, rate: float):
    """The dirt real warehouses hold: each kind of problem Vigil must quarantine or exclude."""
    if rate <= 0:
        return chart, labs
    k = max(1, int(len(chart) * rate / 5))
    chart = chart.copy()
    labs = labs.copy()
    pick = rng.choice(len(chart), 4 * k, replace=False)
    non_numeric, impossible, future, unknown = np.split(pick, 4)
    chart.loc[non_numeric, ["valuenum", "value"]] = [np.nan, "___"]
    heart = chart.index[chart["itemid"] == 220045]
    chart.loc[rng.choice(heart, k, replace=False), "valuenum"] = 999.0
    chart.loc[future, "charttime"] = chart.loc[future, "storetime"] + pd.Timedelta(days=3)
    chart.loc[unknown, ["itemid", "valuenum", "value", "valueuom"]] = [227969, np.nan, "Siderails up", None]
    duplicates = chart.iloc[rng.choice(len(chart), k, replace=False)]
    chart = pd.concat([chart, duplicates], ignore_index=True)
    creat = labs.index[labs["itemid"] == 50912]
    labs.loc[rng.choice(creat, max(1, k // 2), replace=False), "valueuom"] = "umol/L"
    return chart, labs


def _notes(rng, subject, hadm_id, intime, los_days, dischtime, died, risk):
    counts = rng.integers(1, 4, len(subject))
    index = np.repeat(np.arange(len(subject)), counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    first = within == 0  # the admission-day chest film is read within the first 20 hours
    offset_days = np.where(first, rng.uniform(0.05, 0.8, len(index)), rng.uniform(0.05, 1, len(index)) * los_days[index])
    charttime = intime.values[index] + (offset_days * 86400).astype("timedelta64[s]")
    radiology = pd.DataFrame({
        "note_id": [f"{subject[i]}-RR-{j + 1}" for j, i in enumerate(index)],
        "subject_id": subject[index], "hadm_id": hadm_id[index], "note_type": "RR", "note_seq": within + 1,
        "charttime": pd.Series(charttime).dt.floor("s"),
        "text": [notes.radiology_report(rng, risk[i]) for i in index],
    })
    radiology["storetime"] = radiology["charttime"] + pd.to_timedelta(rng.uniform(30, 240, len(index)).round(), unit="m")
    names = [f"{FIRST_NAMES[rng.integers(len(FIRST_NAMES))]} {LAST_NAMES[rng.integers(len(LAST_NAMES))]}"
             for _ in subject]
    discharge = pd.DataFrame({
        "note_id": [f"{s}-DS-{h}" for s, h in zip(subject, hadm_id)],
        "subject_id": subject, "hadm_id": hadm_id, "note_type": "DS", "note_seq": 1,
        "charttime": _ts(dischtime),
        "text": [notes.discharge_summary(rng, bool(d), name) for d, name in zip(died, names)],
    })
    discharge["storetime"] = discharge["charttime"] + pd.Timedelta(hours=20)
    return radiology, discharge


def _ecgs(rng, cohort: SyntheticCohort, subject, intime, los_days, risk, tabular_risk, id_offset: int = 0):
    has_ecg = rng.uniform(size=len(subject)) < 0.8
    rows, measurements = [], []
    study = ECG_STUDY_BASE + id_offset
    for i in np.flatnonzero(has_ecg):
        for k in range(1 + int(rng.uniform() < 0.15)):
            study += 1
            latest = min(0.8, los_days[i]) if k == 0 else los_days[i]
            when = (intime[i] + pd.Timedelta(seconds=float(rng.uniform(0.02, latest) * 86400))).floor("s")
            r = risk[i] + rng.normal(0, 0.3)
            job = {
                "study_id": study, "subject_id": int(subject[i]),
                "path": f"ecg/p{subject[i]}/s{study}/{study}",
                "heart_rate": float(84 + 9 * tabular_risk[i] + rng.normal(0, 8)),
                "st_mv": 0.06 + 0.07 * r, "qrs_ms": float(96 + 14 * r + rng.normal(0, 4)), "t_inverted": bool(r > 1.0),
                "seed": int(rng.integers(1 << 31)),
                "damage": "truncated" if rng.uniform() < 0.01 else None,
            }
            cohort.ecg_jobs.append(job)
            rows.append({"subject_id": job["subject_id"], "study_id": study, "file_name": str(study),
                         "ecg_time": when, "path": job["path"]})
            if study % 5 == 0:  # as in MIMIC-IV-ECG, some records come without the cart's measurements
                continue
            measurements.append({"subject_id": job["subject_id"], "study_id": study, "cart_id": 6848296,
                                 "ecg_time": when, "report_0": "Sinus rhythm",
                                 "rr_interval": int(60000 / max(job["heart_rate"], 30)),
                                 "qrs_onset": 240, "qrs_end": int(240 + job["qrs_ms"])})
    cohort.tables["mimiciv_ecg.record_list"] = pd.DataFrame(rows)
    cohort.tables["mimiciv_ecg.machine_measurements"] = pd.DataFrame(measurements)


def _images(rng, cohort: SyntheticCohort, subject, intime, los_days, risk, id_offset: int = 0, rate: float = 0.75):
    has_image = rng.uniform(size=len(subject)) < rate
    rows, meta = [], []
    study = CXR_STUDY_BASE + id_offset
    for i in np.flatnonzero(has_image):
        for k in range(1 + int(rng.uniform() < 0.3)):
            study += 1
            offset = rng.uniform(0.02, min(0.8, los_days[i])) if k == 0 else rng.uniform(0.02, 0.9) * los_days[i]
            when = (intime[i] + pd.Timedelta(seconds=float(offset * 86400))).floor("s")
            dicom_id = f"{rng.integers(1 << 62):016x}-{study}"
            job = {
                "dicom_id": dicom_id, "subject_id": int(subject[i]), "study_id": study, "when": when.to_pydatetime(),
                "path": f"cxr/p{subject[i]}/s{study}/{dicom_id}.dcm",
                "opacity": float(0.7 * np.exp(0.55 * (risk[i] + rng.normal(0, 0.3)))),
                "monochrome1": bool(rng.uniform() < 0.1), "seed": int(rng.integers(1 << 31)),
                "damage": "corrupt" if rng.uniform() < 0.01 else None,
            }
            cohort.image_jobs.append(job)
            rows.append({"subject_id": job["subject_id"], "study_id": study, "dicom_id": dicom_id, "path": job["path"]})
            meta.append({"dicom_id": dicom_id, "subject_id": job["subject_id"], "study_id": study,
                         "performedprocedurestepdescription": "CHEST (PORTABLE AP)", "viewposition": "AP",
                         "rows": imaging.SIZE, "columns": imaging.SIZE,
                         "studydate": int(when.strftime("%Y%m%d")),
                         "studytime": float(when.strftime("%H%M%S")), "modality": "CR"})
    cohort.tables["mimiciv_cxr.record_list"] = pd.DataFrame(rows)
    cohort.tables["mimiciv_cxr.metadata"] = pd.DataFrame(meta)


def write_files(cohort: SyntheticCohort, filestore: Path, progress: bool = True) -> None:
    """Write the WFDB ECG records and DICOM images into the file store."""
    for job in tqdm(cohort.ecg_jobs, desc="ECGs (WFDB)", disable=not progress, unit="rec"):
        rng = np.random.default_rng(job["seed"])
        signal = ecg_synth.synth_ecg(rng, job["heart_rate"], job["st_mv"], job["qrs_ms"], job["t_inverted"])
        target = filestore / job["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        wfdb.wrsamp(target.name, fs=ecg_synth.FS, units=["mV"] * 12, sig_name=list(ecg_synth.LEADS),
                    p_signal=signal, fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                    write_dir=str(target.parent))
        if job["damage"] == "truncated":
            data = target.with_suffix(".dat")
            data.write_bytes(data.read_bytes()[: 4000])
    for job in tqdm(cohort.image_jobs, desc="Images (DICOM)", disable=not progress, unit="img"):
        rng = np.random.default_rng(job["seed"])
        target = filestore / job["path"]
        modality = job.get("modality", "CR")
        pixels = imaging.synth_chest(rng, job["opacity"]) if modality == "CR" else imaging.synth_texture(rng, job["opacity"])
        imaging.write_dicom(target, pixels, patient_id=str(job["subject_id"]), study_uid_seed=job["dicom_id"],
                            when=job["when"], monochrome1=job["monochrome1"], modality=modality)
        if modality == "CT":   # the tumour region its radiomics are measured in
            imaging.write_mask(target, imaging.organ_region())
        if job["damage"] == "corrupt":
            target.write_bytes(b"\x00" * 64 + b"not a dicom file")


def write(wh, cohort: SyntheticCohort, filestore: Path, progress: bool = True) -> dict[str, int]:
    """Write the files, then replace the synthetic subjects' rows in every source table."""
    from pipeline.sources.loading import replace_subject_rows

    write_files(cohort, filestore, progress=progress)
    subjects = cohort.tables["mimiciv_hosp.patients"]["subject_id"].tolist()
    return replace_subject_rows(wh, cohort.tables, subjects, progress=progress)
