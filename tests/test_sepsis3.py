"""The Sepsis-3 cohort query (``sql/extract/cohort_sepsis3.sql``) on hand-built stays, one per
rule: suspected infection (antimicrobial + culture inside its window, systemic routes only) and a
SOFA >= 2 hour from 48 h before to 24 h after it, each SOFA component from its own source, on the
embedded SQLite warehouse and on PostgreSQL alike."""

from datetime import datetime, timedelta

import pandas as pd
import pytest

from pipeline.sources.mimic import read_enrolment

T0 = datetime(2026, 3, 1)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


class Cases:
    """Rows for a set of one-stay patients; stay k starts at T0, its ids are 100 + k."""

    def __init__(self):
        self.rows: dict[str, list[dict]] = {}

    def add(self, table: str, **row) -> None:
        self.rows.setdefault(table, []).append(row)

    def stay(self, k: int, hours: float = 120) -> int:
        self.add("mimiciv_hosp.patients", subject_id=k, gender="F", anchor_age=60, anchor_year=2026)
        self.add("mimiciv_hosp.admissions", subject_id=k, hadm_id=1000 + k, admittime=at(-2), dischtime=at(hours + 24))
        self.add("mimiciv_icu.icustays", subject_id=k, hadm_id=1000 + k, stay_id=100 + k, first_careunit="MICU",
                 last_careunit="MICU", intime=T0, outtime=at(hours), los=hours / 24)
        return k

    def antibiotic(self, k: int, hours: float, drug: str = "Vancomycin", route: str = "IV") -> None:
        self.add("mimiciv_hosp.prescriptions", subject_id=k, hadm_id=1000 + k, starttime=at(hours),
                 stoptime=at(hours + 12), drug=drug, route=route)

    def culture(self, k: int, hours: float) -> None:
        n = len(self.rows.get("mimiciv_hosp.microbiologyevents", []))
        self.add("mimiciv_hosp.microbiologyevents", microevent_id=n + 1, subject_id=k, hadm_id=1000 + k,
                 micro_specimen_id=5000 + n, chartdate=at(hours).replace(hour=0, minute=0), charttime=at(hours),
                 spec_type_desc="BLOOD CULTURE", storetime=at(hours + 48))

    def lab(self, k: int, itemid: int, hours: float, value, stored_after: float = 1.0, specimen: int | None = None
            ) -> None:
        n = len(self.rows.get("mimiciv_hosp.labevents", []))
        self.add("mimiciv_hosp.labevents", labevent_id=n + 1, subject_id=k, hadm_id=1000 + k, itemid=itemid,
                 specimen_id=specimen, charttime=at(hours), storetime=at(hours + stored_after),
                 valuenum=value if isinstance(value, float | int) else None, value=str(value))

    def gas(self, k: int, hours: float, pao2: float, specimen_type: str = "ART.") -> None:
        """A blood gas: its PaO2 and the specimen-type row that says where the blood came from."""
        specimen = 7000 + len(self.rows.get("mimiciv_hosp.labevents", []))
        self.lab(k, PAO2, hours, pao2, specimen=specimen)
        self.lab(k, SPECIMEN_TYPE, hours, specimen_type, specimen=specimen)

    def chart(self, k: int, itemid: int, hours: float, value: float, text: str | None = None) -> None:
        self.add("mimiciv_icu.chartevents", subject_id=k, hadm_id=1000 + k, stay_id=100 + k, charttime=at(hours),
                 storetime=at(hours + 0.25), itemid=itemid, valuenum=value, value=text or str(value))

    def infusion(self, k: int, itemid: int, start: float, end: float, rate: float, unit: str = "mcg/kg/min",
                 weight: float | None = 80) -> None:
        self.add("mimiciv_icu.inputevents", subject_id=k, hadm_id=1000 + k, stay_id=100 + k, starttime=at(start),
                 endtime=at(end), storetime=at(start), itemid=itemid, rate=rate, rateuom=unit, patientweight=weight)

    def urine(self, k: int, hours: float, ml: float) -> None:
        self.add("mimiciv_icu.outputevents", subject_id=k, hadm_id=1000 + k, stay_id=100 + k, charttime=at(hours),
                 storetime=at(hours + 0.25), itemid=226559, value=ml, valueuom="ml")

    def write(self, wh) -> None:
        with wh.begin() as conn:
            for table, rows in self.rows.items():
                wh.bulk_insert(conn, table, pd.DataFrame(rows))


PLATELETS, BILIRUBIN, CREATININE, PAO2, SPECIMEN_TYPE = 51265, 50885, 50912, 50821, 52033
MAP, GCS_EYE, GCS_VERBAL, GCS_MOTOR, FIO2, VENT_MODE = 220052, 220739, 223900, 223901, 223835, 223849
NOREPINEPHRINE, DOPAMINE = 221906, 221662


def build_cases() -> tuple[Cases, dict[int, datetime | None]]:
    """The cases and each stay's expected enrolment (None: not Sepsis-3)."""
    c, expected = Cases(), {}

    # culture, then the antimicrobial 3 h later: suspicion at the culture (2 h); platelets 80 (2 points)
    # drawn at 4 h count from the hour that ends at 5 h; both known at the antimicrobial, 5 h
    k = c.stay(1)
    c.culture(k, 2), c.antibiotic(k, 5), c.lab(k, PLATELETS, 4, 80), c.lab(k, CREATININE, 6, 2.5)
    expected[101] = at(5)

    # the antimicrobial alone: no culture, no suspicion, whatever the SOFA
    k = c.stay(2)
    c.antibiotic(k, 5), c.lab(k, PLATELETS, 4, 15)
    expected[102] = None

    # a culture 80 h before the antimicrobial is outside its 72 h window
    k = c.stay(3, hours=200)
    c.culture(k, 1), c.antibiotic(k, 81), c.lab(k, PLATELETS, 80, 15)
    expected[103] = None

    # antimicrobial first (3 h), culture 10 h later: suspicion at 3 h, known at 13 h; norepinephrine
    # 0.05 mcg/kg/min (3 points) from 23:30 counts in the hour ending at 24 h, inside suspicion + 24 h
    k = c.stay(4)
    c.antibiotic(k, 3), c.culture(k, 13), c.infusion(k, NOREPINEPHRINE, 23.5, 30, 0.05)
    expected[104] = at(24)

    # the same, but the organ dysfunction begins 30 h after the suspicion: too late
    k = c.stay(5)
    c.antibiotic(k, 3), c.culture(k, 13), c.infusion(k, NOREPINEPHRINE, 33.5, 40, 0.05)
    expected[105] = None

    # an eye ointment is not a systemic antimicrobial
    k = c.stay(6)
    c.culture(k, 2), c.antibiotic(k, 5, "Erythromycin 0.5% Ophth Oint", "BOTH EYES"), c.lab(k, PLATELETS, 4, 15)
    expected[106] = None

    # infection with SOFA 1 only (MAP 65): not Sepsis-3
    k = c.stay(7)
    c.culture(k, 2), c.antibiotic(k, 5), c.chart(k, MAP, 6, 65)
    expected[107] = None

    # GCS 4 + 4 + 4 = 12 charted together (2 points), its repeated row counted once; the same
    # components at different times do not add up to a score
    k = c.stay(8)
    c.culture(k, 2), c.antibiotic(k, 5)
    for item, value in ((GCS_EYE, 4), (GCS_VERBAL, 4), (GCS_MOTOR, 4), (GCS_MOTOR, 4)):
        c.chart(k, item, 7.5, value)
    for item, hours, value in ((GCS_EYE, 1, 1), (GCS_VERBAL, 2, 1)):
        c.chart(k, item, hours, value)
    expected[108] = at(8)

    # PaO2 90 on FiO2 60 % (ratio 150) on a ventilator: respiration 3
    k = c.stay(9)
    c.culture(k, 2), c.antibiotic(k, 5), c.chart(k, FIO2, 9, 60), c.chart(k, VENT_MODE, 8, 1), c.gas(k, 10, 90)
    expected[109] = at(11)

    # the same ratio without a ventilator is 2 points; a PaO2 with no FiO2 charted is not scored
    k = c.stay(10)
    c.culture(k, 2), c.antibiotic(k, 5), c.chart(k, FIO2, 9, 60), c.gas(k, 10, 90), c.gas(k, 20, 40)
    expected[110] = at(11)

    # bilirubin 1.5 (1 point) + dopamine 3 mcg/kg/min given in mcg/min (2 points) = 3
    k = c.stay(11)
    c.culture(k, 2), c.antibiotic(k, 5), c.lab(k, BILIRUBIN, 3, 1.5), c.infusion(k, DOPAMINE, 6.2, 8, 240, "mcg/min")
    expected[111] = at(7)

    # 5 mL of urine an hour: under 200 mL a day is renal 4, from the 24th ICU hour on (suspicion at 10 h)
    k = c.stay(12)
    c.culture(k, 10), c.antibiotic(k, 11)
    for hour in range(0, 31):
        c.urine(k, hour + 0.5, 5)
    expected[112] = at(24)

    # a venous gas is no PaO2: with it the ratio (40 / 0.6) would score 2
    k = c.stay(13)
    c.culture(k, 2), c.antibiotic(k, 5), c.chart(k, FIO2, 9, 60), c.gas(k, 10, 40, specimen_type="VEN.")
    expected[113] = None

    # dopamine in mcg/min with no weight cannot be rated: bilirubin's 1 point alone
    k = c.stay(14)
    c.culture(k, 2), c.antibiotic(k, 5), c.lab(k, BILIRUBIN, 3, 1.5), c.infusion(k, DOPAMINE, 6.2, 8, 240, "mcg/min", None)
    expected[114] = None

    # two urine measurements in a day say nothing about the day's output
    k = c.stay(15)
    c.culture(k, 29), c.antibiotic(k, 30), c.urine(k, 25, 10), c.urine(k, 26, 10)
    expected[115] = None

    # creatinine 2.5 charted at 6 h but stored at 40 h: enrolled when it arrived
    k = c.stay(16)
    c.culture(k, 2), c.antibiotic(k, 5), c.lab(k, CREATININE, 6, 2.5, stored_after=34)
    expected[116] = at(40)

    # an intubated patient's GCS (verbal "No Response-ETT") is taken as 15, not 1 + 1 + 1
    k = c.stay(17)
    c.culture(k, 2), c.antibiotic(k, 5)
    c.chart(k, GCS_EYE, 7, 1), c.chart(k, GCS_VERBAL, 7, 1, "No Response-ETT"), c.chart(k, GCS_MOTOR, 7, 1)
    expected[117] = None

    # a culture 30 h after the antimicrobial is outside its 24 h window
    k = c.stay(18)
    c.antibiotic(k, 5), c.culture(k, 35), c.lab(k, PLATELETS, 6, 15)
    expected[118] = None

    # a culture 70 h before the antimicrobial is inside its 72 h window: suspicion at the culture (1 h),
    # platelets 15 at 20 h inside [-47 h, 25 h]; known once the antimicrobial starts, 71 h
    k = c.stay(19)
    c.culture(k, 1), c.antibiotic(k, 71), c.lab(k, PLATELETS, 20, 15)
    expected[119] = at(71)

    # organ dysfunction that ended more than 48 h before the suspicion (60 h) does not count
    k = c.stay(20)
    c.culture(k, 60), c.antibiotic(k, 61), c.lab(k, PLATELETS, -13, 15)
    expected[120] = None

    # a culture with only a date counts from the end of that day: the antimicrobial at 5 h (day 1),
    # the culture dated day 1, platelets 15 at 4 h: known at the end of day 1
    k = c.stay(21)
    c.antibiotic(k, 5), c.lab(k, PLATELETS, 4, 15)
    c.add("mimiciv_hosp.microbiologyevents", microevent_id=999, subject_id=k, hadm_id=1000 + k,
          micro_specimen_id=5999, chartdate=at(0), charttime=None, spec_type_desc="URINE")
    expected[121] = at(24)
    return c, expected


@pytest.fixture
def sepsis_warehouse(any_warehouse):
    cases, expected = build_cases()
    cases.write(any_warehouse)
    return any_warehouse, expected


def test_the_sepsis3_query_enrols_exactly_the_stays_that_meet_both_criteria_from_when_they_did(sepsis_warehouse):
    wh, expected = sepsis_warehouse
    enrolled = read_enrolment(wh, "cohort_sepsis3", at(200))
    found = dict(zip(enrolled["stay_id"], enrolled["enrolled_time"]))
    assert found == {stay: pd.Timestamp(when) for stay, when in expected.items() if when is not None}


def test_the_sepsis3_query_sees_only_what_had_arrived_by_its_date(sepsis_warehouse):
    wh, _ = sepsis_warehouse
    assert 101 not in set(read_enrolment(wh, "cohort_sepsis3", at(4.9))["stay_id"])    # before the antimicrobial
    assert 104 not in set(read_enrolment(wh, "cohort_sepsis3", at(12))["stay_id"])     # before the culture
    early = read_enrolment(wh, "cohort_sepsis3", at(5.5))
    assert dict(zip(early["stay_id"], early["enrolled_time"])) == {101: pd.Timestamp(at(5))}
    assert 111 not in set(read_enrolment(wh, "cohort_sepsis3", at(6.5))["stay_id"])    # dopamine from 6.2 h, hour ends 7 h
    assert 116 not in set(read_enrolment(wh, "cohort_sepsis3", at(39))["stay_id"])     # the creatinine not yet stored
