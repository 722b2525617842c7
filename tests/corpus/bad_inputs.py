"""The bad-input corpus: every way a night's source rows and files can be wrong, as cases.

Each case gets its own patient and ICU stay (admitted the day before the night, still in the
ICU, with one good heart-rate reading so the stay itself is scorable) and plants one kind of
bad input for it: in the source tables as a hospital feed would deliver it, or as a file in
the file store. Files are generated here rather than checked in (a 250,000-character note, a
truncated WFDB record, a DICOM with a transfer syntax nobody can decode).

A case names the canonical table its bad row is judged in, whether the night should
quarantine it (validation or a reader refused it) or exclude it (outside the cohort
definition, an exact duplicate, a stay with no data), the record ids it expects there, and a
fragment of the reason that must be recorded for them.
"""

from __future__ import annotations

import os
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import wfdb

from pipeline.synthetic import ecg as synthetic_ecg
from pipeline.synthetic import imaging as synthetic_imaging

SUBJECT0, HADM0, STAY0 = 9_800_000, 9_810_000, 9_820_000
HEART_RATE, CREATININE, SODIUM, POTASSIUM, SPO2, TEMP_C, WEIGHT, GCS_VERBAL, URINE = (
    220045, 50912, 50983, 50971, 220277, 223762, 226512, 223900, 226559)


@dataclass
class Corpus:
    """Source rows and files for one night, built case by case; ``statements`` are SQL run after
    the rows are inserted (text that is not UTF-8 can only be written that way)."""

    night_start: datetime
    filestore: Path
    rows: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    next_lab: int = 990_000_000
    statements: list[tuple[str, dict]] = field(default_factory=list)

    def write(self, wh) -> None:
        """Insert the rows into the warehouse's source tables and run the statements, in one transaction."""
        import pandas as pd
        from sqlalchemy import text

        with wh.begin() as conn:
            for table, rows in self.rows.items():
                wh.bulk_insert(conn, table, pd.DataFrame(rows))
            for statement, params in self.statements:
                conn.execute(text(statement), params)

    @property
    def outside(self) -> Path:
        """A folder beside the file store, not in it (links pointing out of the store go here)."""
        folder = self.filestore.parent / "outside-the-store"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def arrival(self) -> datetime:
        return self.night_start + timedelta(hours=12)

    # ------------------------------------------------------------------ patients and stays
    def stay(self, i: int, *, age: int | str | None = 60, sex: str | None = "F", no_intime: bool = False,
             outtime: datetime | None = None, patient: bool = True, good_reading: bool = True,
             intime_text: str | None = None) -> int:
        subject, hadm, stay = SUBJECT0 + i, HADM0 + i, STAY0 + i
        intime = None if no_intime else self.night_start - timedelta(days=1)
        intime = intime_text if intime_text is not None else intime
        if patient:
            self.rows["mimiciv_hosp.patients"].append({"subject_id": subject, "gender": sex, "anchor_age": age,
                                                       "anchor_year": self.night_start.year})
        self.rows["mimiciv_hosp.admissions"].append({"subject_id": subject, "hadm_id": hadm,
                                                     "admittime": intime, "admission_type": "URGENT"})
        self.rows["mimiciv_icu.icustays"].append({"subject_id": subject, "hadm_id": hadm, "stay_id": stay,
                                                  "first_careunit": "MICU", "intime": intime, "outtime": outtime})
        if good_reading and intime is not None:
            self.chart(i, HEART_RATE, 88.0, "bpm", at=self.night_start + timedelta(hours=1))
        return stay

    # ------------------------------------------------------------------ events
    def chart(self, i: int, itemid: int, valuenum, unit, *, at: datetime | None = None, stay: int | None = None,
              value: str | None = None, stored: datetime | None = None) -> str:
        at = self.night_start + timedelta(hours=2) if at is None else at
        self.rows["mimiciv_icu.chartevents"].append({
            "subject_id": SUBJECT0 + i, "hadm_id": HADM0 + i, "stay_id": STAY0 + i if stay is None else stay,
            "charttime": at, "storetime": stored or self.arrival, "itemid": itemid,
            "value": value if value is not None else (None if valuenum is None else str(valuenum)),
            "valuenum": valuenum, "valueuom": unit})
        clock = "NaT" if not isinstance(at, datetime) else at.strftime("%Y%m%dT%H%M%S")  # a bad time has none
        repeat = sum(1 for r in self.rows["mimiciv_icu.chartevents"][:-1]
                     if (r["subject_id"], r["itemid"], r["charttime"]) == (SUBJECT0 + i, itemid, at))
        return f"chartevents/{SUBJECT0 + i}/{itemid if isinstance(itemid, int) else '?'}/{clock}#{repeat}"

    def chart_without_time(self, i: int) -> str:
        self.rows["mimiciv_icu.chartevents"].append({
            "subject_id": SUBJECT0 + i, "hadm_id": HADM0 + i, "stay_id": STAY0 + i, "charttime": None,
            "storetime": self.arrival, "itemid": HEART_RATE, "value": "90", "valuenum": 90.0, "valueuom": "bpm"})
        return f"chartevents/{SUBJECT0 + i}/{HEART_RATE}/NaT#0"

    def lab(self, i: int, itemid: int, valuenum, unit, *, value: str | None = None, at: datetime | None = None,
            subject: int | None = None, no_time: bool = False, labevent_id: int | None = None) -> str:
        self.next_lab += 1
        labevent_id = self.next_lab if labevent_id is None else labevent_id
        at = None if no_time else (self.night_start + timedelta(hours=3) if at is None else at)
        self.rows["mimiciv_hosp.labevents"].append({
            "labevent_id": labevent_id, "subject_id": SUBJECT0 + i if subject is None else subject,
            "itemid": itemid, "charttime": at, "storetime": self.arrival,
            "value": value if value is not None else str(valuenum), "valuenum": valuenum, "valueuom": unit})
        return f"labevents/{labevent_id}"

    def output(self, i: int, volume: float) -> str:
        at = self.night_start + timedelta(hours=4)
        self.rows["mimiciv_icu.outputevents"].append({
            "subject_id": SUBJECT0 + i, "hadm_id": HADM0 + i, "stay_id": STAY0 + i, "charttime": at,
            "storetime": self.arrival, "itemid": URINE, "value": volume, "valueuom": "ml"})
        return f"outputevents/{SUBJECT0 + i}/{URINE}/{at.strftime('%Y%m%dT%H%M%S')}#0"

    # ------------------------------------------------------------------ notes
    def note(self, i: int, text, *, note_id: str | None = None, at: datetime | None = None,
             no_time: bool = False, table: str = "radiology", subject: int | None = None) -> str:
        note_id = note_id or f"corpus-{i}-{len(self.rows['mimiciv_note.' + table])}"
        self.rows[f"mimiciv_note.{table}"].append({
            "note_id": note_id, "subject_id": SUBJECT0 + i if subject is None else subject, "hadm_id": HADM0 + i,
            "note_type": "RR" if table == "radiology" else "DS", "note_seq": 1,
            "charttime": None if no_time else (at or self.night_start + timedelta(hours=5)),
            "storetime": self.arrival, "text": text})
        return note_id

    # ------------------------------------------------------------------ ECGs
    def ecg(self, i: int, write: Callable[[Path], None] | None, *, path: str | None = "default",
            subject: int | None = None, at=None) -> str:
        study = 97_000_000 + i
        uri = f"corpus/ecg/{study}/{study}" if path == "default" else path
        if write is not None:
            target = self.filestore / uri
            target.parent.mkdir(parents=True, exist_ok=True)
            write(target)
        self.rows["mimiciv_ecg.record_list"].append({
            "subject_id": SUBJECT0 + i if subject is None else subject, "study_id": study,
            "file_name": str(study), "ecg_time": self.night_start + timedelta(hours=6) if at is None else at,
            "path": uri})
        return str(study)

    # ------------------------------------------------------------------ images
    def image(self, i: int, write: Callable[[Path], None] | None, *, path: str | None = "default",
              subject: int | None = None, study_time: float | None = None) -> str:
        dicom_id = f"corpus-{i}"
        uri = f"corpus/cxr/{dicom_id}.dcm" if path == "default" else path
        if write is not None:
            target = self.filestore / uri
            target.parent.mkdir(parents=True, exist_ok=True)
            write(target)
        when = self.night_start + timedelta(hours=7)
        subject = SUBJECT0 + i if subject is None else subject
        self.rows["mimiciv_cxr.record_list"].append({"subject_id": subject, "study_id": 98_000_000 + i,
                                                     "dicom_id": dicom_id, "path": uri})
        self.rows["mimiciv_cxr.metadata"].append({
            "dicom_id": dicom_id, "subject_id": subject, "study_id": 98_000_000 + i, "viewposition": "AP",
            "studydate": int(when.strftime("%Y%m%d")),
            "studytime": float(when.strftime("%H%M%S")) if study_time is None else study_time,
            "modality": "CR"})
        return dicom_id


# ---------------------------------------------------------------------- file writers

def _signal(seconds: float = 10.0) -> np.ndarray:
    signal = synthetic_ecg.synth_ecg(np.random.default_rng(5), 80, 0.0, 90, False)
    return signal[: int(seconds * synthetic_ecg.FS)]


def _wfdb(signal: np.ndarray, leads=synthetic_ecg.LEADS) -> Callable[[Path], None]:
    def write(target: Path) -> None:
        wfdb.wrsamp(target.name, fs=synthetic_ecg.FS, units=["mV"] * len(leads), sig_name=list(leads),
                    p_signal=signal, fmt=["16"] * len(leads), adc_gain=[1000.0] * len(leads),
                    baseline=[0] * len(leads), write_dir=str(target.parent))
    return write


def _then(first: Callable[[Path], None], damage: Callable[[Path], None]) -> Callable[[Path], None]:
    def write(target: Path) -> None:
        first(target)
        damage(target)
    return write


def _truncate(suffix: str, keep: float) -> Callable[[Path], None]:
    def damage(target: Path) -> None:
        path = target.with_suffix(suffix) if suffix else target
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    return damage


def _dicom(pixels: np.ndarray | None = None, **changes) -> Callable[[Path], None]:
    def write(target: Path) -> None:
        image = synthetic_imaging.synth_chest(np.random.default_rng(9), 1.0) if pixels is None else pixels
        synthetic_imaging.write_dicom(target, image, patient_id="corpus", study_uid_seed=target.name,
                                      when=datetime(2026, 1, 30, 7))
        if changes:
            ds = pydicom.dcmread(target)
            for keyword, value in changes.items():
                if value is None:
                    delattr(ds, keyword)
                elif keyword == "TransferSyntaxUID":
                    ds.file_meta.TransferSyntaxUID = value
                else:
                    setattr(ds, keyword, value)
            ds.save_as(target, enforce_file_format=True)
    return write


def _bytes(content: bytes) -> Callable[[Path], None]:
    return lambda target: target.write_bytes(content)


# ---------------------------------------------------------------------- the cases

@dataclass
class Case:
    name: str
    table: str                      # canonical table the bad row is judged in
    outcome: str                    # "quarantined", "excluded" or "used"
    reason: str                     # fragment of the recorded reason ("" for "used")
    plant: Callable[[Corpus, int], list[str] | str]
    backends: tuple[str, ...] = ("sqlite", "postgres")  # where the feed can write such a row


def _host(plant):
    """A case planted in an otherwise healthy stay of its own."""
    def build(c: Corpus, i: int):
        c.stay(i)
        return plant(c, i)
    return build


def _bad_stay(**kwargs):
    def build(c: Corpus, i: int):
        return [str(c.stay(i, **kwargs))]
    return build


def _duplicate_stay(c: Corpus, i: int):
    stay = c.stay(i)
    c.rows["mimiciv_icu.icustays"].append(dict(c.rows["mimiciv_icu.icustays"][-1]))
    return [str(stay)]


def _event_of_bad_stay(c: Corpus, i: int):
    c.stay(i, age=-1, good_reading=False)
    return [c.chart(i, HEART_RATE, 75.0, "bpm")]


def _exact_duplicate_chart(c: Corpus, i: int):
    c.chart(i, HEART_RATE, 101.0, "bpm")
    return [c.chart(i, HEART_RATE, 101.0, "bpm")]


def _conflicting_chart(c: Corpus, i: int):
    return [c.chart(i, HEART_RATE, 80.0, "bpm"), c.chart(i, HEART_RATE, 131.0, "bpm")]


def _conflicting_note_ids(c: Corpus, i: int):
    c.note(i, "CXR: no acute process.", note_id=f"corpus-dup-{i}")
    c.note(i, "Discharge summary, unrelated text.", note_id=f"corpus-dup-{i}", table="discharge")
    return [f"corpus-dup-{i}"]


def _exact_duplicate_note(c: Corpus, i: int):
    c.note(i, "Portable AP chest: lines in place.", note_id=f"corpus-same-{i}")
    return [c.note(i, "Portable AP chest: lines in place.", note_id=f"corpus-same-{i}")]


def _ecg_header_without_data(target: Path) -> None:
    _wfdb(_signal())(target)
    target.with_suffix(".dat").unlink()


BINARY_NOTE = "".join(chr(b) for b in bytes(range(1, 32)) * 40 if b not in (9, 10, 13))
DROP_TABLE = "'); DROP TABLE mimiciv_hosp.labevents; --"
NIGHT = datetime(2026, 1, 30)

CASES: list[Case] = [
    # --- the cohort: patients, admissions and ICU stays
    Case("negative age", "cohort", "quarantined", "age outside 0-120 years", _bad_stay(age=-4)),
    Case("age of 150 years", "cohort", "quarantined", "age outside 0-120 years", _bad_stay(age=150)),
    Case("age unknown", "cohort", "quarantined", "age is unknown", _bad_stay(age=None)),
    Case("sex not F or M", "cohort", "quarantined", "sex is not F or M", _bad_stay(sex="X")),
    Case("sex missing", "cohort", "quarantined", "sex is unknown", _bad_stay(sex=None)),
    Case("ICU stay of a patient with no patient row", "cohort", "quarantined", "age is unknown",
         _bad_stay(patient=False)),
    Case("ICU admission time empty", "cohort", "quarantined", "admission time is empty", _bad_stay(no_intime=True)),
    Case("discharged before admission", "cohort", "quarantined", "discharged before admission",
         _bad_stay(outtime=NIGHT - timedelta(days=2))),
    Case("the same stay id twice", "cohort", "quarantined", "stay id appears more than once", _duplicate_stay),
    Case("a stay with no data at all", "cohort", "excluded", "no measurement, note, ECG or image",
         _bad_stay(good_reading=False)),
    # --- measurements: labs, vitals, outputs
    Case("lab value 'pending'", "events", "quarantined", "value is empty or not numeric",
         _host(lambda c, i: [c.lab(i, CREATININE, None, "mg/dL", value="pending")])),
    Case("censored lab value '<0.5'", "events", "quarantined", "value is empty or not numeric",
         _host(lambda c, i: [c.lab(i, CREATININE, None, "mg/dL", value="<0.5")])),
    Case("empty lab value", "events", "quarantined", "value is empty or not numeric",
         _host(lambda c, i: [c.lab(i, SODIUM, None, "mEq/L", value="")])),
    Case("vital sign NaN", "events", "quarantined", "value is empty or not numeric",
         _host(lambda c, i: [c.chart(i, SPO2, float("nan"), "%", value="NaN")])),
    Case("SQL in a lab value", "events", "quarantined", "value is empty or not numeric",
         _host(lambda c, i: [c.lab(i, POTASSIUM, None, "mEq/L", value=DROP_TABLE)])),
    Case("creatinine in umol/L", "events", "quarantined", "unit differs from the concept map's unit",
         _host(lambda c, i: [c.lab(i, CREATININE, 88.4, "umol/L")])),
    Case("heart rate in Hz", "events", "quarantined", "unit differs from the concept map's unit",
         _host(lambda c, i: [c.chart(i, HEART_RATE, 1.4, "Hz", at=NIGHT + timedelta(hours=9))])),
    Case("heart rate 900", "events", "quarantined", "above the physiologically possible range",
         _host(lambda c, i: [c.chart(i, HEART_RATE, 900.0, "bpm", at=NIGHT + timedelta(hours=9))])),
    Case("negative heart rate", "events", "quarantined", "below the physiologically possible range",
         _host(lambda c, i: [c.chart(i, HEART_RATE, -20.0, "bpm", at=NIGHT + timedelta(hours=9))])),
    Case("infinite heart rate", "events", "quarantined", "above the physiologically possible range",
         _host(lambda c, i: [c.chart(i, HEART_RATE, float("inf"), "bpm", at=NIGHT + timedelta(hours=9))])),
    Case("SpO2 150 %", "events", "quarantined", "above the physiologically possible range",
         _host(lambda c, i: [c.chart(i, SPO2, 150.0, "%")])),
    Case("temperature 5 degrees C", "events", "quarantined", "below the physiologically possible range",
         _host(lambda c, i: [c.chart(i, TEMP_C, 5.0, "°C")])),
    Case("sodium 5 mEq/L", "events", "quarantined", "below the physiologically possible range",
         _host(lambda c, i: [c.lab(i, SODIUM, 5.0, "mEq/L")])),
    Case("potassium 99 mEq/L", "events", "quarantined", "above the physiologically possible range",
         _host(lambda c, i: [c.lab(i, POTASSIUM, 99.0, "mEq/L")])),
    Case("weight 0 kg", "events", "quarantined", "below the physiologically possible range",
         _host(lambda c, i: [c.chart(i, WEIGHT, 0.0, "kg")])),
    Case("GCS verbal 9", "events", "quarantined", "above the physiologically possible range",
         _host(lambda c, i: [c.chart(i, GCS_VERBAL, 9.0, None)])),
    Case("negative urine output", "events", "quarantined", "below the physiologically possible range",
         _host(lambda c, i: [c.output(i, -500.0)])),
    Case("charted next month", "events", "quarantined", "charted after the night it arrived in",
         _host(lambda c, i: [c.chart(i, HEART_RATE, 70.0, "bpm", at=datetime(2026, 3, 1, 8))])),
    Case("lab charted in the year 2999", "events", "excluded", "charted after the prediction time",
         _host(lambda c, i: [c.lab(i, SODIUM, 140.0, "mEq/L", at=datetime(2999, 1, 1))])),
    Case("vital with no chart time", "events", "quarantined", "chart time is empty",
         _host(lambda c, i: [c.chart_without_time(i)])),
    Case("lab with no chart time", "events", "excluded", "time is empty",
         _host(lambda c, i: [c.lab(i, SODIUM, 140.0, "mEq/L", no_time=True)])),
    Case("exact duplicate vital", "events", "excluded", "exact duplicate", _host(_exact_duplicate_chart)),
    Case("two values for one item and time", "events", "quarantined", "conflicting values",
         _host(_conflicting_chart)),
    Case("lab drawn before the ICU stay", "events", "excluded", "not during an ICU stay",
         _host(lambda c, i: [c.lab(i, SODIUM, 139.0, "mEq/L", at=NIGHT - timedelta(days=5))])),
    Case("lab of an unknown patient", "events", "excluded", "not during an ICU stay",
         lambda c, i: [c.lab(i, SODIUM, 139.0, "mEq/L", subject=SUBJECT0 + 90_000)]),
    Case("vital for a stay that does not exist", "events", "quarantined", "stay is not in the validated cohort",
         lambda c, i: [c.chart(i, HEART_RATE, 90.0, "bpm", stay=STAY0 + 90_000)]),
    Case("vital for a quarantined stay", "events", "quarantined", "stay is not in the validated cohort",
         _event_of_bad_stay),
    Case("unknown lab item", "events", "excluded", "item is not in the concept map",
         _host(lambda c, i: [c.lab(i, 99_999, 1.0, "mg/dL")])),
    Case("unknown chart item", "events", "excluded", "item is not in the concept map",
         _host(lambda c, i: [c.chart(i, 999_999, 1.0, "x")])),
    # --- notes
    Case("empty note", "notes", "quarantined", "note text is empty", _host(lambda c, i: [c.note(i, "")])),
    Case("note with no text", "notes", "quarantined", "note text is empty", _host(lambda c, i: [c.note(i, None)])),
    Case("whitespace-only note", "notes", "quarantined", "note text is blank",
         _host(lambda c, i: [c.note(i, " \n\t \n")])),
    Case("250,000-character note", "notes", "quarantined", "longer than 200,000 characters",
         _host(lambda c, i: [c.note(i, "Patient resting comfortably. " * 8_621)])),
    Case("binary note", "notes", "quarantined", "binary or was not decodable",
         _host(lambda c, i: [c.note(i, BINARY_NOTE)])),
    Case("note that failed UTF-8 decoding", "notes", "quarantined", "binary or was not decodable",
         _host(lambda c, i: [c.note(i, "Impression: " + "\ufffd" * 40 + " stable")])),
    Case("note charted next year", "notes", "excluded", "charted after the prediction time",
         _host(lambda c, i: [c.note(i, "Future dated note.", at=datetime(2027, 1, 1))])),
    Case("note with no time", "notes", "excluded", "time is empty",
         _host(lambda c, i: [c.note(i, "Undated note.", no_time=True)])),
    Case("note of a patient not in the ICU", "notes", "excluded", "not during an ICU stay",
         lambda c, i: [c.note(i, "Outpatient clinic letter.", subject=SUBJECT0 + 90_001)]),
    Case("two different notes with one id", "notes", "quarantined", "record id appears more than once",
         _host(_conflicting_note_ids)),
    Case("exact duplicate note", "notes", "excluded", "exact duplicate", _host(_exact_duplicate_note)),
    # --- ECGs
    Case("ECG file missing", "ecgs", "quarantined", "ECG file not found", _host(lambda c, i: [c.ecg(i, None)])),
    Case("ECG data file truncated", "ecgs", "quarantined", "unreadable or truncated WFDB record",
         _host(lambda c, i: [c.ecg(i, _then(_wfdb(_signal()), _truncate(".dat", 0.1)))])),
    Case("ECG header is garbage", "ecgs", "quarantined", "unreadable WFDB header",
         _host(lambda c, i: [c.ecg(i, lambda t: t.with_suffix(".hea").write_bytes(b"\x89PNG\r\n garbage \xff\xfe"))])),
    Case("ECG header empty", "ecgs", "quarantined", "unreadable WFDB header",
         _host(lambda c, i: [c.ecg(i, lambda t: t.with_suffix(".hea").write_bytes(b""))])),
    Case("ECG header without its data file", "ecgs", "quarantined", "WFDB data file not found",
         _host(lambda c, i: [c.ecg(i, _ecg_header_without_data)])),
    Case("ECG with 6 leads", "ecgs", "quarantined", "wrong lead set",
         _host(lambda c, i: [c.ecg(i, _wfdb(_signal()[:, :6], synthetic_ecg.LEADS[:6]))])),
    Case("ECG all NaN", "ecgs", "quarantined", "NaN",
         _host(lambda c, i: [c.ecg(i, _wfdb(np.full_like(_signal(), np.nan)))])),
    Case("ECG flat line", "ecgs", "quarantined", "flat-line signal",
         _host(lambda c, i: [c.ecg(i, _wfdb(np.zeros_like(_signal())))])),
    Case("ECG of one second", "ecgs", "quarantined", "signal too short",
         _host(lambda c, i: [c.ecg(i, _wfdb(_signal(1.0)))])),
    Case("ECG without a path", "ecgs", "quarantined", "file path is empty",
         _host(lambda c, i: [c.ecg(i, None, path=None)])),
    Case("ECG path escaping the file store", "ecgs", "quarantined", "points outside the file store",
         _host(lambda c, i: [c.ecg(i, None, path="../../../../etc/passwd")])),
    Case("ECG of a patient not in the ICU", "ecgs", "excluded", "not during an ICU stay",
         lambda c, i: [c.ecg(i, _wfdb(_signal()), subject=SUBJECT0 + 90_002)]),
    # --- images
    Case("DICOM file missing", "images", "quarantined", "DICOM file not found", _host(lambda c, i: [c.image(i, None)])),
    Case("DICOM that is a text file", "images", "quarantined", "not a readable DICOM file",
         _host(lambda c, i: [c.image(i, _bytes(b"Patient report, not an image\n" * 20))])),
    Case("DICOM of zero bytes", "images", "quarantined", "not a readable DICOM file",
         _host(lambda c, i: [c.image(i, _bytes(b""))])),
    Case("DICOM truncated in its pixel data", "images", "quarantined", "pixel data",
         _host(lambda c, i: [c.image(i, _then(_dicom(), _truncate("", 0.6)))])),
    Case("DICOM without pixel data", "images", "quarantined", "holds no image",
         _host(lambda c, i: [c.image(i, _dicom(PixelData=None))])),
    Case("DICOM in an unknown transfer syntax", "images", "quarantined", "cannot decode pixel data",
         _host(lambda c, i: [c.image(i, _dicom(TransferSyntaxUID="1.2.826.0.1.3680043.9.9999.1"))])),
    Case("DICOM with constant pixels", "images", "quarantined", "no contrast",
         _host(lambda c, i: [c.image(i, _dicom(np.full((64, 64), 700, np.uint16)))])),
    Case("DICOM without a path", "images", "quarantined", "file path is empty",
         _host(lambda c, i: [c.image(i, None, path=None)])),
    Case("DICOM path escaping the file store", "images", "quarantined", "points outside the file store",
         _host(lambda c, i: [c.image(i, None, path="../../secrets.dcm")])),
    Case("image of a patient not in the ICU", "images", "excluded", "not during an ICU stay",
         lambda c, i: [c.image(i, _dicom(), subject=SUBJECT0 + 90_003)]),
]


# ---------------------------------------------------------------------- hostile files and rows
# What an adversarial review found stopping a whole night (crashes, hangs, memory blow-ups) or
# passing silently wrong values; each now costs one record a reason, and the night goes on.

def _header(edit: Callable[[list[str]], list[str]], signal: np.ndarray | None = None) -> Callable[[Path], None]:
    """A valid 12-lead WFDB record whose header lines ``edit`` rewrites."""
    def write(target: Path) -> None:
        _wfdb(_signal() if signal is None else signal)(target)
        header = target.with_suffix(".hea")
        header.write_text("\n".join(edit(header.read_text().splitlines())) + "\n")
    return write


def _record_field(index: int, value: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        fields = lines[0].split()
        fields[index] = value
        return [" ".join(fields)] + lines[1:]
    return edit


def _gains(gain: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        signals = [line.split() for line in lines[1:13]]
        for fields in signals:
            fields[2] = f"{gain}(0)/mV"
        return lines[:1] + [" ".join(f) for f in signals] + lines[13:]
    return edit


def _data_files_named(name: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: lines[:1] + [" ".join([name] + line.split()[1:]) for line in lines[1:13]] + lines[13:]


def _replace(suffix: str, make: Callable[[Path, Corpus], None], corpus: Corpus) -> Callable[[Path], None]:
    """A valid record whose ``suffix`` file (``""``: the DICOM itself) is swapped for ``make``."""
    def write(target: Path) -> None:
        if suffix in (".hea", ".dat"):
            _wfdb(_signal())(target)
        else:
            _dicom()(target)
        path = target.with_suffix(suffix) if suffix else target
        path.unlink()
        make(path, corpus)
    return write


def _link_to(destination: str) -> Callable[[Path, Corpus], None]:
    return lambda path, corpus: path.symlink_to(destination)


def _link_outside(path: Path, corpus: Corpus) -> None:
    """A link to a perfectly good copy of the file, kept outside the store."""
    copy = corpus.outside / f"{path.parent.name}-{path.name}"
    if path.suffix == ".dcm":
        _dicom()(copy)
    else:
        _wfdb(_signal())(copy.with_suffix(""))
    path.symlink_to(copy)


def _fifo(path: Path, corpus: Corpus) -> None:
    os.mkfifo(path)


def _directory(path: Path, corpus: Corpus) -> None:
    path.mkdir()


def _sparse(size: int) -> Callable[[Path, Corpus], None]:
    def make(path: Path, corpus: Corpus) -> None:
        with open(path, "wb") as handle:
            handle.truncate(size)  # no disk used: a hole of ``size`` bytes
    return make


def _loop(path: Path, corpus: Corpus) -> None:
    other = path.with_name(path.name + ".loop")
    other.symlink_to(path.name)
    path.symlink_to(other.name)


def _inside_link(target: Path) -> None:
    """A record that is a link to another good record inside the store (allowed)."""
    real = target.with_name(target.name + "-real")
    _wfdb(_signal())(real)
    for suffix in (".hea", ".dat"):
        target.with_suffix(suffix).symlink_to(real.with_suffix(suffix).name)
    target.with_suffix(".hea").unlink()
    target.with_suffix(".hea").write_text(real.with_suffix(".hea").read_text().replace(real.name, target.name))


def _microvolts(target: Path) -> None:
    leads = synthetic_ecg.LEADS
    wfdb.wrsamp(target.name, fs=synthetic_ecg.FS, units=["uV"] * len(leads), sig_name=list(leads),
                p_signal=_signal() * 1000, fmt=["16"] * len(leads), adc_gain=[1.0] * len(leads),
                baseline=[0] * len(leads), write_dir=str(target.parent))


def _dicom_meta(target: Path, syntax: str) -> bytes:
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[target.name])
    meta.TransferSyntaxUID = syntax
    buffer = pydicom.filebase.DicomBytesIO()
    pydicom.filewriter.write_file_meta_info(buffer, meta, enforce_standard=True)
    return b"\0" * 128 + b"DICM" + buffer.getvalue()


def _fake_deflate(target: Path) -> None:
    """A file meta that claims Deflated Explicit VR over a body that is not deflated."""
    _dicom()(target)
    data = target.read_bytes()
    length = int.from_bytes(data[140:144], "little")  # (0002,0000) group length
    target.write_bytes(_dicom_meta(target, pydicom.uid.DeflatedExplicitVRLittleEndian) + data[144 + length:])


BOMB_BYTES = (4 << 30) - 2  # inflated size of the corpus's decompression bomb (a ~18 MB file): 4 GB, even


def _deflate_bomb(target: Path) -> None:
    """A real DICOM header then 4 GB of zero pixel data, deflated: pydicom would inflate all of it."""
    header = pydicom.dataset.Dataset()
    header.SOPClassUID = pydicom.uid.DigitalXRayImageStorageForPresentation
    header.Rows, header.Columns, header.BitsAllocated, header.SamplesPerPixel = 46340, 46340, 16, 1
    body = pydicom.filebase.DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    pydicom.filewriter.write_dataset(body, header)
    prefix = body.getvalue() + b"\xe0\x7f\x10\x00OB\x00\x00" + BOMB_BYTES.to_bytes(4, "little")
    squeeze = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 24)
    with open(target, "wb") as handle:
        handle.write(_dicom_meta(target, pydicom.uid.DeflatedExplicitVRLittleEndian))
        handle.write(squeeze.compress(prefix))
        for _ in range(BOMB_BYTES // len(zeros)):
            handle.write(squeeze.compress(zeros))
        handle.write(squeeze.compress(zeros[:BOMB_BYTES % len(zeros)]))
        handle.write(squeeze.flush())


LONG_NAME = "é" * 130  # 260 bytes: past the file system's 255 a name, within the 255 characters a path column holds
PHI_FOLDER = "DOE_JOHN_MRN48213977"  # a patient's name in a file path: never in a reason or a report
MAX_FILE_MB = 64                     # the corpus night's file-size limit (VIGIL_MAX_FILE_MB)


def _not_utf8(table: str, column: str, key: str, raw: bytes):
    """Rewrite one column of the planted row as TEXT holding bytes that are not UTF-8."""
    def plant(c: Corpus, row_key: str) -> None:
        c.statements.append((f"UPDATE {table} SET {column} = CAST(:raw AS TEXT) WHERE {key} = :key",
                             {"raw": raw, "key": row_key}))
    return plant


def _note_not_utf8(column: str):
    def build(c: Corpus, i: int):
        c.stay(i)
        note_id = c.note(i, "Chest film: clear.")
        _not_utf8("mimiciv_note.radiology", column, "note_id", b"Impression: \xff\xfe\xc3(")(c, note_id)
        return [note_id]
    return build


def _chart_not_utf8(c: Corpus, i: int):
    c.stay(i)
    row = c.chart(i, SPO2, 97.0, "%", value="97")
    c.statements.append(("UPDATE mimiciv_icu.chartevents SET value = CAST(:raw AS TEXT) "
                         "WHERE subject_id = :s AND itemid = :item", {"raw": b"9\xff7", "s": SUBJECT0 + i, "item": SPO2}))
    return [row]


def _overlapping_open_stays(c: Corpus, i: int):
    earlier = c.stay(i)
    later = STAY0 + 500 + i  # the same patient, admitted again while the first stay never closed
    c.rows["mimiciv_hosp.admissions"].append({"subject_id": SUBJECT0 + i, "hadm_id": HADM0 + 500 + i,
                                              "admittime": c.night_start, "admission_type": "URGENT"})
    c.rows["mimiciv_icu.icustays"].append({"subject_id": SUBJECT0 + i, "hadm_id": HADM0 + 500 + i,
                                           "stay_id": later, "first_careunit": "MICU",
                                           "intime": c.night_start, "outtime": None})
    c.chart(i, HEART_RATE, 91.0, "bpm", at=c.night_start + timedelta(hours=3), stay=later)
    return [str(earlier)]


def _ancient_open_stay(c: Corpus, i: int):
    stay = c.stay(i, good_reading=False)
    c.rows["mimiciv_icu.icustays"][-1]["intime"] = datetime(1925, 1, 30, 8)
    c.rows["mimiciv_hosp.admissions"][-1]["admittime"] = datetime(1925, 1, 30, 8)
    c.rows["mimiciv_hosp.patients"][-1]["anchor_year"] = 1925  # a plausible age at that admission
    c.chart(i, HEART_RATE, 88.0, "bpm", at=c.night_start + timedelta(hours=1))
    return [str(stay)]


def _shared_primary_key(c: Corpus, i: int):
    c.stay(i)
    first = c.lab(i, SODIUM, 139.0, "mEq/L", labevent_id=990_900_000 + i)
    c.lab(i, SODIUM, 127.0, "mEq/L", labevent_id=990_900_000 + i, at=c.night_start + timedelta(hours=5))
    return [first]


def _swapped(name: str, table: str, suffix: str, make, reason: str) -> Case:
    """A case whose file (``suffix`` of a WFDB record, or the DICOM) is replaced by ``make``."""
    if table == "ecgs":
        return Case(name, "ecgs", "quarantined", reason, _host(lambda c, i: [c.ecg(i, _replace(suffix, make, c))]))
    return Case(name, "images", "quarantined", reason, _host(lambda c, i: [c.image(i, _replace(suffix, make, c))]))


HOSTILE_CASES: list[Case] = [
    # --- WFDB headers that crashed the reader or asked for all the memory there is
    Case("WFDB sampling rate 0", "ecgs", "quarantined", "implausible ECG sampling rate",
         _host(lambda c, i: [c.ecg(i, _header(_record_field(2, "0")))])),
    Case("WFDB sampling rate NaN", "ecgs", "quarantined", "implausible ECG sampling rate",
         _host(lambda c, i: [c.ecg(i, _header(_record_field(2, "nan")))])),
    Case("WFDB sampling rate negative", "ecgs", "quarantined", "implausible ECG sampling rate",
         _host(lambda c, i: [c.ecg(i, _header(_record_field(2, "-500")))])),
    Case("WFDB sampling rate 1e-9 Hz", "ecgs", "quarantined", "implausible ECG sampling rate",
         _host(lambda c, i: [c.ecg(i, _header(_record_field(2, "1e-9")))])),
    Case("WFDB header claiming 10^10 samples", "ecgs", "quarantined", "data file shorter than its header says",
         _host(lambda c, i: [c.ecg(i, _header(_record_field(3, "10000000000")))])),
    Case("WFDB gains that overflow every sample", "ecgs", "quarantined", "NaN or infinite",
         _host(lambda c, i: [c.ecg(i, _header(_gains("1e-45")))])),
    Case("WFDB gains that make every sample denormal", "ecgs", "quarantined", "flat-line signal",
         _host(lambda c, i: [c.ecg(i, _header(_gains("1e300")))])),
    Case("WFDB header of 70 kB", "ecgs", "quarantined", "unreadable WFDB header",
         _host(lambda c, i: [c.ecg(i, _header(lambda lines: lines + ["# " + "x" * 70_000]))])),
    Case("WFDB signal count not a number", "ecgs", "quarantined", "unreadable WFDB header",
         _host(lambda c, i: [c.ecg(i, _header(_record_field(1, "12x")))])),
    Case("WFDB data file named outside its folder", "ecgs", "quarantined", "do not name data files",
         _host(lambda c, i: [c.ecg(i, _header(_data_files_named("../../../x.dat")))])),
    Case("WFDB record with no signals", "ecgs", "quarantined", "WFDB",
         _host(lambda c, i: [c.ecg(i, _header(lambda lines: [" ".join([lines[0].split()[0], "0", "500"])]))])),
    Case("WFDB record in microvolts", "ecgs", "used", "", _host(lambda c, i: [c.ecg(i, _microvolts)])),
    Case("WFDB record linked to another record in the store", "ecgs", "used", "",
         _host(lambda c, i: [c.ecg(i, _inside_link)])),
    # --- files that are not what a path promises: links out, devices, pipes, folders, giants
    _swapped("WFDB data file linked to /dev/zero", "ecgs", ".dat", _link_to("/dev/zero"),
             "WFDB data file points outside the file store"),
    _swapped("WFDB data file linked outside the store", "ecgs", ".dat", _link_outside,
             "WFDB data file points outside the file store"),
    _swapped("WFDB header linked outside the store", "ecgs", ".hea", _link_outside,
             "ECG file points outside the file store"),
    _swapped("WFDB data file that is a FIFO", "ecgs", ".dat", _fifo, "WFDB data file is not a regular file"),
    _swapped("WFDB header that is a folder", "ecgs", ".hea", _directory, "ECG file is not a regular file"),
    _swapped("WFDB data file of 100 MB", "ecgs", ".dat", _sparse(100 << 20),
             f"WFDB data file is larger than the {MAX_FILE_MB} MB file limit"),
    _swapped("WFDB header in a link loop", "ecgs", ".hea", _loop, "ECG file cannot be opened"),
    _swapped("DICOM linked to /dev/zero", "images", "", _link_to("/dev/zero"), "points outside the file store"),
    _swapped("DICOM linked outside the store", "images", "", _link_outside, "points outside the file store"),
    _swapped("DICOM that is a FIFO", "images", "", _fifo, "DICOM file is not a regular file"),
    _swapped("DICOM that is a folder", "images", "", _directory, "DICOM file is not a regular file"),
    _swapped("DICOM of 100 MB", "images", "", _sparse(100 << 20),
             f"DICOM file is larger than the {MAX_FILE_MB} MB file limit"),
    _swapped("DICOM in a link loop", "images", "", _loop, "file path cannot be resolved"),
    # --- paths
    Case("ECG path empty string", "ecgs", "quarantined", "file path is empty",
         _host(lambda c, i: [c.ecg(i, None, path="")])),
    Case("ECG path of blanks", "ecgs", "quarantined", "file path is empty",
         _host(lambda c, i: [c.ecg(i, None, path="   ")])),
    Case("ECG path absolute", "ecgs", "quarantined", "points outside the file store",
         _host(lambda c, i: [c.ecg(i, None, path="/etc/passwd")])),
    Case("ECG path naming the store itself", "ecgs", "quarantined", "points outside the file store",
         _host(lambda c, i: [c.ecg(i, None, path=".")])),
    Case("ECG file name longer than the file system allows", "ecgs", "quarantined",
         "longer than the file system allows", _host(lambda c, i: [c.ecg(i, None, path=f"corpus/{LONG_NAME}")])),
    Case("ECG path naming a patient, file missing", "ecgs", "quarantined", "ECG file not found",
         _host(lambda c, i: [c.ecg(i, None, path=f"corpus/{PHI_FOLDER}/{i}")])),
    Case("DICOM ECG that is a text file", "ecgs", "quarantined", "not a readable DICOM file",
         _host(lambda c, i: [c.ecg(i, _bytes(b"12-lead ECG: sinus rhythm\n"), path=f"corpus/ecg/{i}.dcm")])),
    Case("image path empty string (the store root)", "images", "quarantined", "file path is empty",
         _host(lambda c, i: [c.image(i, None, path="")])),
    Case("image file name longer than the file system allows", "images", "quarantined",
         "longer than the file system allows", _host(lambda c, i: [c.image(i, None, path=f"{LONG_NAME}.dcm")])),
    Case("image path naming a patient, file missing", "images", "quarantined", "DICOM file not found",
         _host(lambda c, i: [c.image(i, None, path=f"corpus/{PHI_FOLDER}/{i}.dcm")])),
    # --- DICOM headers
    Case("DICOM window width 0", "images", "quarantined", "window width is not positive",
         _host(lambda c, i: [c.image(i, _dicom(WindowCenter=500, WindowWidth=0))])),
    Case("DICOM deflate claimed over a body that is not deflated", "images", "quarantined", "not deflate data",
         _host(lambda c, i: [c.image(i, _fake_deflate)])),
    Case("DICOM deflate bomb (18 MB inflating to 4 GB)", "images", "quarantined", "decompression bomb",
         _host(lambda c, i: [c.image(i, _deflate_bomb)])),
    Case("DICOM with two SOP class UIDs", "images", "used", "",
         _host(lambda c, i: [c.image(i, _dicom(SOPClassUID=["1.2.840.10008.5.1.4.1.1.1", "1.2.3.4"]))])),
    Case("DICOM declaring 65535 x 65535 pixels", "images", "quarantined", "cannot decode pixel data",
         _host(lambda c, i: [c.image(i, _dicom(Rows=65535, Columns=65535))])),
    Case("DICOM with 0 bits allocated", "images", "quarantined", "cannot decode pixel data",
         _host(lambda c, i: [c.image(i, _dicom(BitsAllocated=0))])),
    Case("DICOM with -1 frames", "images", "quarantined", "cannot decode pixel data",
         _host(lambda c, i: [c.image(i, _dicom(NumberOfFrames=-1))])),
    Case("DICOM with an unknown photometric interpretation", "images", "quarantined", "cannot decode pixel data",
         _host(lambda c, i: [c.image(i, _dicom(PhotometricInterpretation="GARBAGE"))])),
    Case("DICOM claiming 3 samples a pixel", "images", "quarantined", "cannot decode pixel data",
         _host(lambda c, i: [c.image(i, _dicom(SamplesPerPixel=3))])),
    Case("DICOM rescale slope NaN", "images", "quarantined", "no contrast",
         _host(lambda c, i: [c.image(i, _dicom(RescaleSlope="NaN", RescaleIntercept=0))])),
    Case("DICOM rescale slope 1e308", "images", "quarantined", "no contrast",
         _host(lambda c, i: [c.image(i, _dicom(RescaleSlope=1e308, RescaleIntercept=0))])),
    Case("image study time 99:60:60", "images", "quarantined", "study date and time is not a date and time",
         _host(lambda c, i: [c.image(i, _dicom(), study_time=996060.0)])),
    # --- source rows a loosely typed warehouse (SQLite) accepts and extraction could not read
    Case("note text that is not UTF-8", "notes", "quarantined", "text in text is not valid UTF-8",
         _note_not_utf8("text"), backends=("sqlite",)),
    Case("note type that is not UTF-8", "notes", "quarantined", "text in note_type is not valid UTF-8",
         _note_not_utf8("note_type"), backends=("sqlite",)),
    Case("vital value text that is not UTF-8", "events", "quarantined", "text in value_text is not valid UTF-8",
         _chart_not_utf8, backends=("sqlite",)),
    Case("lab value number that is text", "events", "quarantined", "valuenum holds text where a number belongs",
         _host(lambda c, i: [c.lab(i, SODIUM, "one-forty", "mEq/L")]), backends=("sqlite",)),
    Case("vital item id that is text", "events", "quarantined", "itemid holds text where a number belongs",
         _host(lambda c, i: [c.chart(i, "HR", 80.0, "bpm")]), backends=("sqlite",)),
    Case("vital charted with a time-zone offset", "events", "quarantined", "carries a time-zone offset",
         _host(lambda c, i: [c.chart(i, HEART_RATE, 84.0, "bpm", at="2026-01-30 09:00:00+02:00")]),
         backends=("sqlite",)),
    Case("lab charted 'yesterday'", "events", "quarantined", "is not a date and time",
         _host(lambda c, i: [c.lab(i, POTASSIUM, 4.1, "mEq/L", at="yesterday")]), backends=("sqlite",)),
    Case("patient age that is text", "cohort", "quarantined", "anchor_age holds text where a number belongs",
         _bad_stay(age="old"), backends=("sqlite",)),
    Case("ICU admission with a time-zone offset", "cohort", "quarantined", "carries a time-zone offset",
         lambda c, i: [str(c.stay(i, intime_text="2026-01-29 00:00:00-05:00"))], backends=("sqlite",)),
    Case("ECG time with a time-zone offset", "ecgs", "quarantined", "carries a time-zone offset",
         _host(lambda c, i: [c.ecg(i, _wfdb(_signal()), at="2026-01-30 06:00:00+01:00")]), backends=("sqlite",)),
    Case("ECG RR interval that is text", "ecgs", "quarantined", "rr_interval holds text where a number belongs",
         _host(lambda c, i: (lambda study: (c.rows["mimiciv_ecg.machine_measurements"].append(
             {"subject_id": SUBJECT0 + i, "study_id": int(study), "rr_interval": "irregular"}), [study])[1])(
             c.ecg(i, _wfdb(_signal())))), backends=("sqlite",)),
    # --- values that were used silently wrong
    Case("lab with an empty unit where one is required", "events", "quarantined",
         "unit is empty but the concept map requires one", _host(lambda c, i: [c.lab(i, SODIUM, 139.0, None)])),
    Case("vital charted in 1900 under a stay id", "events", "quarantined", "before ICU admission or after discharge",
         _host(lambda c, i: [c.chart(i, HEART_RATE, 77.0, "bpm", at=datetime(1900, 1, 30, 8))])),
    Case("creatinine -0", "events", "quarantined", "lower bound of a strictly positive quantity",
         _host(lambda c, i: [c.lab(i, CREATININE, -0.0, "mg/dL", value="-0")])),
    Case("creatinine 0", "events", "quarantined", "lower bound of a strictly positive quantity",
         _host(lambda c, i: [c.lab(i, CREATININE, 0.0, "mg/dL")])),
    Case("urine output -0", "events", "quarantined", "negative sign on a quantity that cannot be negative",
         _host(lambda c, i: [c.output(i, -0.0)]), backends=("postgres",)),  # SQLite stores -0.0 as 0
    Case("two lab rows sharing one primary key", "events", "quarantined", "source row id appears more than once",
         _shared_primary_key),
    Case("one patient in two open ICU stays", "cohort", "excluded",
         "still open while a later ICU stay of the same patient is open", _overlapping_open_stays),
    Case("an open ICU stay admitted a century ago", "cohort", "excluded", "still open more than 365 days",
         _ancient_open_stay),
    # --- found by a second hostile read (2026-12-06): headers wfdb would read with a default, and
    #     DICOM fields past what the decoder accepts
    Case("WFDB sampling rate 10^9 Hz", "ecgs", "quarantined", "implausible ECG sampling rate",
         _host(lambda c, i: [c.ecg(i, _header(_record_field(2, "1000000000")))])),
    Case("WFDB sampling rate 24 Hz", "ecgs", "quarantined", "implausible ECG sampling rate",
         _host(lambda c, i: [c.ecg(i, _header(_record_field(2, "24")))])),
    Case("WFDB sampling rate that is a word (wfdb reads 250 Hz)", "ecgs", "quarantined",
         "unreadable WFDB header (the sampling rate is not a number)",
         _host(lambda c, i: [c.ecg(i, _header(_record_field(2, "fast")))])),
    Case("WFDB header claiming 1000 signals", "ecgs", "quarantined", "signal lines do not name data files",
         _host(lambda c, i: [c.ecg(i, _header(_record_field(1, "1000")))])),
    Case("WFDB header claiming -12 signals", "ecgs", "quarantined", "signal lines do not name data files",
         _host(lambda c, i: [c.ecg(i, _header(_record_field(1, "-12")))])),
    Case("WFDB header of binary bytes", "ecgs", "quarantined", "unreadable WFDB header (UnicodeDecodeError)",
         _host(lambda c, i: [c.ecg(i, _then(_wfdb(_signal()), lambda t: t.with_suffix(".hea").write_bytes(
             bytes(range(256)) * 4)))])),
    Case("WFDB gain that is a word", "ecgs", "quarantined", "a signal's gain is not a number",
         _host(lambda c, i: [c.ecg(i, _header(_gains("x")))])),
    Case("WFDB sample count negative", "ecgs", "quarantined", "unreadable WFDB header (negative sample count)",
         _host(lambda c, i: [c.ecg(i, _header(_record_field(3, "-5000")))])),
    Case("WFDB gain 0 (the format's 200 units per mV)", "ecgs", "used", "",
         _host(lambda c, i: [c.ecg(i, _header(_gains("0")))])),
    Case("ECG record that is a DICOM image", "ecgs", "quarantined", "DICOM object holds no waveform",
         _host(lambda c, i: [c.ecg(i, _dicom(), path=f"corpus/ecg/{i}-image.dcm")])),
    Case("DICOM window width negative", "images", "quarantined", "window width is not positive",
         _host(lambda c, i: [c.image(i, _dicom(WindowCenter=500, WindowWidth=-100))])),
    Case("DICOM window width NaN", "images", "quarantined", "window width is not positive",
         _host(lambda c, i: [c.image(i, _dicom(WindowCenter=500, WindowWidth="NaN"))])),
    Case("DICOM with 0 rows", "images", "quarantined", "cannot decode pixel data",
         _host(lambda c, i: [c.image(i, _dicom(Rows=0))])),
    Case("DICOM storing 32 bits in 16 allocated", "images", "quarantined", "cannot decode pixel data",
         _host(lambda c, i: [c.image(i, _dicom(BitsStored=32))])),
    Case("DICOM pixel representation 7", "images", "quarantined", "cannot decode pixel data",
         _host(lambda c, i: [c.image(i, _dicom(PixelRepresentation=7))])),
    Case("DICOM truncated in its header", "images", "quarantined", "DICOM object holds no image",
         _host(lambda c, i: [c.image(i, _then(_dicom(), lambda t: t.write_bytes(t.read_bytes()[:300])))])),
    Case("DICOM of a preamble only", "images", "quarantined", "DICOM object holds no image",
         _host(lambda c, i: [c.image(i, _bytes(b"\x00" * 128 + b"DICM"))])),
]
CASES += HOSTILE_CASES


def plant(night_start: datetime, filestore: Path, backend: str = "sqlite"
          ) -> tuple[Corpus, dict[str, list[str]]]:
    """Build every case a ``backend`` warehouse can hold; returns the rows to write and each
    planted case's expected record ids."""
    corpus = Corpus(night_start=night_start, filestore=filestore)
    expected = {}
    for i, case in enumerate(CASES):
        if backend in case.backends:
            ids = case.plant(corpus, i)
            expected[case.name] = [ids] if isinstance(ids, str) else list(ids)
    return corpus, expected
