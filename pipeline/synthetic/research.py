"""Seeded synthetic cohorts for the three research models beside ICU mortality.

Each is an ICU cohort built by :func:`pipeline.synthetic.cohort.generate` in its own id range,
with the model's enrolment, outcome and files added, and its outcome driven by latent risks
spread over several modalities (so fusion beats every single modality by construction):

* ``pe_thrombolysis`` — pulmonary embolism treated with thrombolysis; 3 outcomes (normal /
  in-hospital death / major bleeding): death from the ECG-borne right-heart strain and the labs,
  bleeding from the labs and age.
* ``liver_steatosis`` — 5 liver ultrasound images (DICOM ``US``) per patient; grade S0-S3 from
  the images, the labs and the note text.
* ``gist_resection`` — post-operative stays after GIST resection, with CT and pathology
  (DICOM ``SM``) images; recurrence-free survival from the labs, CT and pathology, with
  follow-up censoring.

Enrolment and outcomes are ``vigil_features.outcome_events`` rows (what a site maps from its
registries): ``cohort_<name>`` at enrolment, ``major_bleeding``, ``steatosis_grade`` (value =
grade), ``gist_recurrence`` and ``gist_last_follow_up``.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from pipeline.synthetic.cohort import CXR_STUDY_BASE, SyntheticCohort, generate

COHORTS = {"pe_thrombolysis": 100_000, "liver_steatosis": 200_000, "gist_resection": 300_000}  # id offsets


def _softmax_draw(rng, logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return (rng.uniform(size=(len(p), 1)) > np.cumsum(p, axis=1)).sum(axis=1)


def _events(cohort: SyntheticCohort, rows: np.ndarray, outcome: str, times, values=None) -> pd.DataFrame:
    stays = cohort.tables["mimiciv_icu.icustays"]["stay_id"].to_numpy()
    return pd.DataFrame({"stay_id": stays[rows], "outcome": outcome,
                         "event_time": pd.Series(pd.to_datetime(times)).dt.floor("s").to_numpy(),
                         "value": np.nan if values is None else np.asarray(values, float)})


def _enrolment(cohort: SyntheticCohort, name: str, rng, hours: float) -> pd.DataFrame:
    n = len(cohort.latent["age"])
    when = cohort.latent["intime"] + (rng.uniform(0, hours, n) * 3600).astype("timedelta64[s]")
    return _events(cohort, np.arange(n), f"cohort_{name}", when)


def _add_images(cohort: SyntheticCohort, rng, rows, per_patient: int, modality: str, level: np.ndarray,
                hours: tuple[float, float], first_study: int, description: str) -> None:
    """DICOM jobs (written by :func:`write_files`) and their record-list rows, ``per_patient``
    images in one study per patient, acquired ``hours`` after ICU admission."""
    subjects = cohort.tables["mimiciv_icu.icustays"]["subject_id"].to_numpy()
    records, meta = [], []
    for k, i in enumerate(rows):
        study = first_study + k
        when = pd.Timestamp(cohort.latent["intime"][i]) + pd.Timedelta(hours=float(rng.uniform(*hours)))
        for j in range(per_patient):
            dicom_id = f"{rng.integers(1 << 62):016x}-{study}-{j}"
            job = {"dicom_id": dicom_id, "subject_id": int(subjects[i]), "study_id": study,
                   "when": (when + pd.Timedelta(minutes=j)).floor("s").to_pydatetime(),
                   "path": f"{modality.lower()}/p{subjects[i]}/s{study}/{dicom_id}.dcm",
                   "opacity": float(level[i] + rng.normal(0, 0.35)), "modality": modality,
                   "monochrome1": False, "seed": int(rng.integers(1 << 31)), "damage": None}
            cohort.image_jobs.append(job)
            records.append({"subject_id": job["subject_id"], "study_id": study, "dicom_id": dicom_id,
                            "path": job["path"]})
            meta.append({"dicom_id": dicom_id, "subject_id": job["subject_id"], "study_id": study,
                         "performedprocedurestepdescription": description, "viewposition": None,
                         "rows": 128, "columns": 128, "studydate": int(job["when"].strftime("%Y%m%d")),
                         "studytime": float(job["when"].strftime("%H%M%S")), "modality": modality})
    for table, rows_ in (("mimiciv_cxr.record_list", records), ("mimiciv_cxr.metadata", meta)):
        cohort.tables[table] = pd.concat([cohort.tables[table], pd.DataFrame(rows_)], ignore_index=True)


def pe_thrombolysis(n: int, start: datetime, days: int, seed: int) -> tuple[SyntheticCohort, pd.DataFrame]:
    rng = np.random.default_rng(seed + 11)
    outcome: dict[str, np.ndarray] = {}

    def died(risk, age):
        death = -1.4 + 2.2 * risk["ecg"] + 1.2 * risk["tabular"]
        bleeding = -1.4 + 1.8 * (age - 64) / 15 + 1.8 * risk["tabular"]
        outcome["class"] = _softmax_draw(rng, np.column_stack([np.zeros(len(age)), death, bleeding]))
        return outcome["class"] == 1

    cohort = generate(n, start, days, seed + 1, id_offset=COHORTS["pe_thrombolysis"], died=died, image_rate=0.3)
    bled = np.flatnonzero(outcome["class"] == 2)
    stay_days = (cohort.latent["outtime"] - cohort.latent["intime"]) / np.timedelta64(1, "D")
    when = cohort.latent["intime"][bled] + (rng.uniform(0.3, 0.9, len(bled)) * stay_days[bled] * 86400
                                            ).astype("timedelta64[s]")
    events = pd.concat([_enrolment(cohort, "pe_thrombolysis", rng, 2), _events(cohort, bled, "major_bleeding", when)],
                       ignore_index=True)
    cohort.latent["class"] = outcome["class"]
    return cohort, events


def liver_steatosis(n: int, start: datetime, days: int, seed: int) -> tuple[SyntheticCohort, pd.DataFrame]:
    rng = np.random.default_rng(seed + 12)
    cohort = generate(n, start, days, seed + 2, id_offset=COHORTS["liver_steatosis"], image_rate=0.0)
    risk = cohort.latent
    score = 1.0 * risk["image"] + 1.0 * risk["tabular"] + 0.8 * risk["text"] + rng.normal(0, 0.4, n)
    grade = np.digitize(score, np.quantile(score, [0.35, 0.65, 0.88]))
    _add_images(cohort, rng, np.arange(n), 5, "US", risk["image"], (1, 18), CXR_STUDY_BASE + COHORTS["liver_steatosis"],
                "US ABDOMEN LIVER")
    reported = risk["intime"] + (rng.uniform(2, 4, n) * 86400).astype("timedelta64[s]")
    events = pd.concat([_enrolment(cohort, "liver_steatosis", rng, 6),
                        _events(cohort, np.arange(n), "steatosis_grade", reported, grade)], ignore_index=True)
    cohort.latent["class"] = grade
    return cohort, events


def gist_resection(n: int, start: datetime, days: int, seed: int) -> tuple[SyntheticCohort, pd.DataFrame]:
    rng = np.random.default_rng(seed + 13)
    cohort = generate(n, start, days, seed + 3, id_offset=COHORTS["gist_resection"], image_rate=0.0)
    risk = cohort.latent
    first = CXR_STUDY_BASE + COHORTS["gist_resection"]
    _add_images(cohort, rng, np.arange(n), 2, "CT", risk["image"], (1, 16), first, "CT ABDOMEN PELVIS W CONTRAST")
    _add_images(cohort, rng, np.arange(n), 2, "SM", risk["text"], (2, 18), first + n, "GIST RESECTION H&E")
    hazard = np.exp(0.8 * risk["tabular"] + 0.8 * risk["image"] + 0.8 * risk["text"])
    recurrence_days = rng.exponential(60.0 / hazard)     # time compressed: weeks stand for years
    follow_up_days = rng.uniform(20, 120, n)
    recurred = np.flatnonzero(recurrence_days <= follow_up_days)
    day = np.timedelta64(86400, "s")
    events = pd.concat([
        _enrolment(cohort, "gist_resection", rng, 1),
        _events(cohort, recurred, "gist_recurrence", risk["intime"][recurred] + (recurrence_days[recurred] * day)),
        _events(cohort, np.arange(n), "gist_last_follow_up",
                risk["intime"] + (np.minimum(recurrence_days, follow_up_days) * day)),
    ], ignore_index=True)
    cohort.latent["days"], cohort.latent["event"] = np.minimum(recurrence_days, follow_up_days), recurrence_days <= follow_up_days
    return cohort, events


BUILDERS = {"pe_thrombolysis": pe_thrombolysis, "liver_steatosis": liver_steatosis, "gist_resection": gist_resection}


def generate_research(n_per_cohort: int = 300, start: datetime = datetime(2026, 1, 1), days: int = 60,
                      seed: int = 7) -> dict[str, tuple[SyntheticCohort, pd.DataFrame]]:
    """Every research cohort: its source tables and files, and its outcome-event rows."""
    return {name: build(n_per_cohort, start, days, seed) for name, build in BUILDERS.items()}


def write_research(wh, cohorts: dict[str, tuple[SyntheticCohort, pd.DataFrame]], filestore, progress: bool = True
                   ) -> dict[str, int]:
    """Write each cohort (files, then its subjects' source rows) and its outcome events."""
    from pipeline.sources.loading import replace_subject_rows
    from pipeline.synthetic.cohort import write_files

    written: dict[str, int] = {}
    for cohort, events in cohorts.values():
        write_files(cohort, filestore, progress=progress)
        subjects = cohort.tables["mimiciv_hosp.patients"]["subject_id"].tolist()
        for table, count in replace_subject_rows(wh, cohort.tables, subjects, progress=progress).items():
            written[table] = written.get(table, 0) + count
        with wh.begin() as conn:
            wh.delete_in(conn, "vigil_features.outcome_events", "stay_id", events["stay_id"].unique().tolist())
            count = wh.bulk_insert(conn, "vigil_features.outcome_events", events)
        written["vigil_features.outcome_events"] = written.get("vigil_features.outcome_events", 0) + count
    return written
