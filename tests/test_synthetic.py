"""The synthetic cohort: seeded, multimodal, dirty in known ways, with signal in every modality."""

from datetime import datetime

import numpy as np
import pandas as pd

from pipeline.synthetic import cohort as synthetic


def test_same_seed_same_cohort_other_seed_other_cohort():
    a = synthetic.generate(80, datetime(2026, 1, 1), 10, seed=3)
    b = synthetic.generate(80, datetime(2026, 1, 1), 10, seed=3)
    c = synthetic.generate(80, datetime(2026, 1, 1), 10, seed=4)
    for table in a.tables:
        pd.testing.assert_frame_equal(a.tables[table], b.tables[table])
    assert a.ecg_jobs == b.ecg_jobs and a.image_jobs == b.image_jobs
    assert not a.tables["mimiciv_hosp.labevents"].equals(c.tables["mimiciv_hosp.labevents"])


def test_cohort_shape_missing_modalities_and_dirt():
    cohort = synthetic.generate(600, datetime(2026, 1, 1), 30, seed=9)
    stays = cohort.tables["mimiciv_icu.icustays"]
    deaths = cohort.tables["mimiciv_hosp.admissions"]["hospital_expire_flag"]
    assert 0.08 < deaths.mean() < 0.35
    with_ecg = {j["subject_id"] for j in cohort.ecg_jobs}
    with_image = {j["subject_id"] for j in cohort.image_jobs}
    assert 0 < len(with_ecg) < stays["subject_id"].nunique()       # some stays lack an ECG
    assert 0 < len(with_image) < stays["subject_id"].nunique()     # and some lack imaging
    chart = cohort.tables["mimiciv_icu.chartevents"]
    assert (chart["value"] == "___").any() and (chart["valuenum"] == 999).any()
    assert chart.duplicated().any() and (chart["itemid"] == 227969).any()
    assert (chart["storetime"] >= chart["charttime"]).mean() > 0.99   # values arrive after they are charted
    days = stays["intime"].dt.floor("D").nunique()
    assert days >= 25                                               # admissions arrive day by day


def test_every_modality_carries_outcome_signal():
    cohort = synthetic.generate(1500, datetime(2026, 1, 1), 30, seed=1)
    died = cohort.tables["mimiciv_hosp.admissions"].set_index("subject_id")["hospital_expire_flag"]
    died = died[~died.index.duplicated()]
    labs = cohort.tables["mimiciv_hosp.labevents"]
    lactate = labs[labs["itemid"] == 50813].groupby("subject_id")["valuenum"].mean()
    st = pd.Series({j["subject_id"]: j["st_mv"] for j in cohort.ecg_jobs})
    opacity = pd.Series({j["subject_id"]: j["opacity"] for j in cohort.image_jobs})
    notes = cohort.tables["mimiciv_note.radiology"]
    support = notes.assign(s=notes["text"].str.count("intubated|Norepinephrine|Vasopressin|Endotracheal tube terminates"))
    support = support.groupby("subject_id")["s"].mean()
    for signal in (lactate, st, opacity, support):
        joined = pd.concat([signal.rename("x"), died.rename("y")], axis=1, join="inner")
        assert joined.loc[joined["y"] == 1, "x"].mean() > joined.loc[joined["y"] == 0, "x"].mean()
        assert np.corrcoef(joined["x"], joined["y"])[0, 1] > 0.1
