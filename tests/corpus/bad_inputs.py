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

import math
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
    """Source rows and files for one night, built case by case."""

    night_start: datetime
    filestore: Path
    rows: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    next_lab: int = 990_000_000

    @property
    def arrival(self) -> datetime:
        return self.night_start + timedelta(hours=12)

    # ------------------------------------------------------------------ patients and stays
    def stay(self, i: int, *, age: int | None = 60, sex: str | None = "F", no_intime: bool = False,
             outtime: datetime | None = None, patient: bool = True, good_reading: bool = True) -> int:
        subject, hadm, stay = SUBJECT0 + i, HADM0 + i, STAY0 + i
        intime = None if no_intime else self.night_start - timedelta(days=1)
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
        clock = "NaT" if at is None or (isinstance(at, float) and math.isnan(at)) else at.strftime("%Y%m%dT%H%M%S")
        repeat = sum(1 for r in self.rows["mimiciv_icu.chartevents"][:-1]
                     if (r["subject_id"], r["itemid"], r["charttime"]) == (SUBJECT0 + i, itemid, at))
        return f"chartevents/{SUBJECT0 + i}/{itemid}/{clock}#{repeat}"

    def chart_without_time(self, i: int) -> str:
        self.rows["mimiciv_icu.chartevents"].append({
            "subject_id": SUBJECT0 + i, "hadm_id": HADM0 + i, "stay_id": STAY0 + i, "charttime": None,
            "storetime": self.arrival, "itemid": HEART_RATE, "value": "90", "valuenum": 90.0, "valueuom": "bpm"})
        return f"chartevents/{SUBJECT0 + i}/{HEART_RATE}/NaT#0"

    def lab(self, i: int, itemid: int, valuenum, unit, *, value: str | None = None, at: datetime | None = None,
            subject: int | None = None, no_time: bool = False) -> str:
        self.next_lab += 1
        at = None if no_time else (self.night_start + timedelta(hours=3) if at is None else at)
        self.rows["mimiciv_hosp.labevents"].append({
            "labevent_id": self.next_lab, "subject_id": SUBJECT0 + i if subject is None else subject,
            "itemid": itemid, "charttime": at, "storetime": self.arrival,
            "value": value if value is not None else str(valuenum), "valuenum": valuenum, "valueuom": unit})
        return f"labevents/{self.next_lab}"

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
            subject: int | None = None) -> str:
        study = 97_000_000 + i
        uri = f"corpus/ecg/{study}/{study}" if path == "default" else path
        if write is not None:
            target = self.filestore / uri
            target.parent.mkdir(parents=True, exist_ok=True)
            write(target)
        self.rows["mimiciv_ecg.record_list"].append({
            "subject_id": SUBJECT0 + i if subject is None else subject, "study_id": study,
            "file_name": str(study), "ecg_time": self.night_start + timedelta(hours=6), "path": uri})
        return str(study)

    # ------------------------------------------------------------------ images
    def image(self, i: int, write: Callable[[Path], None] | None, *, path: str | None = "default",
              subject: int | None = None) -> str:
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
            "studydate": int(when.strftime("%Y%m%d")), "studytime": float(when.strftime("%H%M%S")),
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
    outcome: str                    # "quarantined" or "excluded"
    reason: str                     # fragment of the recorded reason
    plant: Callable[[Corpus, int], list[str] | str]


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
    Case("ECG header without its data file", "ecgs", "quarantined", "WFDB data file missing",
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


def plant(night_start: datetime, filestore: Path) -> tuple[Corpus, dict[str, list[str]]]:
    """Build every case; returns the rows to write and each case's expected record ids."""
    corpus = Corpus(night_start=night_start, filestore=filestore)
    expected = {}
    for i, case in enumerate(CASES):
        ids = case.plant(corpus, i)
        expected[case.name] = [ids] if isinstance(ids, str) else list(ids)
    return corpus, expected
