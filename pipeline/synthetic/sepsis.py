"""What Sepsis-3 is read from, for the synthetic cohort: antimicrobial orders, cultures, and the
SOFA inputs the base cohort does not chart (bilirubin, blood gases on FiO2, ventilator modes,
vasopressor infusions, urine output), so ``sql/extract/cohort_sepsis3.sql`` has data.

Drawn from their own random stream, so the base cohort (and every model trained on it) is the
same with or without them. About half the stays are treated for a suspected infection, the sicker
(higher tabular risk) more often; some stays get an antimicrobial without a culture (prophylaxis),
a culture without one, or an eye ointment, which the query must not count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ANTIMICROBIALS = ("Vancomycin", "Piperacillin-Tazobactam", "CefePIME", "Meropenem", "Ceftriaxone",
                  "Levofloxacin", "MetRONIDAZOLE (FLagyl)")
NOREPINEPHRINE, FIO2, VENT_MODE, FOLEY = 221906, 223835, 223849, 226559
PAO2, SPECIMEN_TYPE, BILIRUBIN = 50821, 52033, 50885


def _hours(start, hours) -> pd.Series:
    return pd.Series(pd.to_datetime(start) + pd.to_timedelta(np.asarray(hours, float) * 3600, unit="s")).dt.floor("s")


def sepsis_inputs(rng, stays: pd.DataFrame, risk: np.ndarray, first_labevent_id: int) -> dict[str, pd.DataFrame]:
    """Rows to add per source table. ``stays``: subject_id, hadm_id, stay_id, intime, los_days."""
    n = len(stays)
    intime, los_h = stays["intime"].to_numpy(), stays["los_days"].to_numpy() * 24
    subject, hadm, stay = (stays[c].to_numpy() for c in ("subject_id", "hadm_id", "stay_id"))
    infected = rng.uniform(size=n) < 1 / (1 + np.exp(-(0.2 + 0.8 * risk)))
    abx_h = rng.uniform(0.05, 0.6, n) * np.minimum(los_h, 40)
    before = rng.uniform(size=n) < 0.7
    culture_h = np.where(before, abx_h - rng.uniform(0.5, 12, n), abx_h + rng.uniform(1, 20, n))

    prophylaxis = ~infected & (rng.uniform(size=n) < 0.15)
    culture_only = ~infected & ~prophylaxis & (rng.uniform(size=n) < 0.15)
    ointment = rng.uniform(size=n) < 0.05
    orders = [(infected, rng.choice(ANTIMICROBIALS, n), "IV"), (prophylaxis, np.full(n, "CeFAZolin"), "IV"),
              (ointment, np.full(n, "Erythromycin 0.5% Ophth Oint"), "BOTH EYES")]
    prescriptions = pd.concat([pd.DataFrame({
        "subject_id": subject[rows], "hadm_id": hadm[rows], "starttime": _hours(intime[rows], abx_h[rows]),
        "stoptime": _hours(intime[rows], abx_h[rows] + 72), "drug_type": "MAIN", "drug": drug[rows], "route": route,
    }) for rows, drug, route in orders], ignore_index=True)

    drawn = infected | culture_only
    cultured = pd.DataFrame({"subject_id": subject[drawn], "hadm_id": hadm[drawn],
                             "charttime": _hours(intime[drawn], culture_h[drawn])})
    cultured["chartdate"] = cultured["charttime"].dt.floor("D")
    cultured["storetime"] = cultured["charttime"] + pd.to_timedelta(rng.uniform(24, 72, len(cultured)), unit="h").floor("s")
    cultured["storedate"] = cultured["storetime"].dt.floor("D")
    cultured["micro_specimen_id"] = 60_000_000 + stay[drawn] % 10_000_000
    cultured["microevent_id"] = cultured["micro_specimen_id"]
    cultured["spec_type_desc"], cultured["test_name"] = "BLOOD CULTURE", "Blood Culture, Routine"
    cultured["org_name"] = np.where(rng.uniform(size=len(cultured)) < 0.3, "STAPH AUREUS COAG +", None)

    shocked = infected & (risk > 0.6)
    shock_h = np.clip(abx_h + rng.uniform(-4, 10, n), 0.2, None)
    ends = np.minimum(shock_h + rng.uniform(6, 48, n), los_h)
    inputs = pd.DataFrame({
        "subject_id": subject[shocked], "hadm_id": hadm[shocked], "stay_id": stay[shocked],
        "starttime": _hours(intime[shocked], shock_h[shocked]), "endtime": _hours(intime[shocked], ends[shocked]),
        "itemid": NOREPINEPHRINE, "amountuom": "mg", "rateuom": "mcg/kg/min",
        "rate": np.round(np.exp(rng.normal(np.log(0.08), 0.5, shocked.sum())), 3),
        "patientweight": np.round(rng.normal(80, 15, shocked.sum()).clip(40, 160), 1),
        "ordercategoryname": "01-Drips", "statusdescription": "FinishedRunning",
    })
    inputs = inputs[inputs["endtime"] > inputs["starttime"]]
    inputs["storetime"] = inputs["starttime"]

    # every 12 h: bilirubin (all stays); PaO2 on charted FiO2 (and a ventilator mode) for the ventilated
    ventilated = rng.uniform(size=n) < 0.3 + 0.2 * (risk > 0)
    draws = np.maximum(1, (los_h // 12).astype(int))
    index = np.repeat(np.arange(n), draws)
    at_h = (np.arange(len(index)) - np.repeat(np.cumsum(draws) - draws, draws)) * 12 + rng.uniform(0.5, 3, len(index))
    lab_times = _hours(intime[index], at_h)
    bilirubin = np.round(np.exp(rng.normal(-0.2 + 0.35 * risk[index], 0.45)), 1)
    on_vent = ventilated[index]
    fio2 = np.round(np.clip(40 + 12 * risk[index] + rng.normal(0, 8, len(index)), 21, 100))
    pao2 = np.round(np.clip(fio2 / 100 * (330 - 70 * risk[index] + rng.normal(0, 40, len(index))), 40, 600))
    gases = pd.DataFrame({"subject_id": subject[index][on_vent], "hadm_id": hadm[index][on_vent], "itemid": PAO2,
                          "charttime": lab_times[on_vent].to_numpy(), "valuenum": pao2[on_vent], "valueuom": "mm Hg",
                          "specimen_id": first_labevent_id + 3_000_000 + np.arange(on_vent.sum())})
    labs = pd.concat([
        pd.DataFrame({"subject_id": subject[index], "hadm_id": hadm[index], "itemid": BILIRUBIN,
                      "charttime": lab_times, "valuenum": bilirubin, "valueuom": "mg/dL"}),
        gases, gases.assign(itemid=SPECIMEN_TYPE, valuenum=np.nan, valueuom=None),   # each gas's "ART." row
    ], ignore_index=True)
    labs["storetime"] = labs["charttime"] + pd.to_timedelta(rng.uniform(20, 90, len(labs)).round(), unit="m")
    labs["value"] = np.where(labs["itemid"] == SPECIMEN_TYPE, "ART.", labs["valuenum"].map(lambda v: f"{v:g}"))
    labs["specimen_id"] = labs["specimen_id"].astype("Int64")
    labs.insert(0, "labevent_id", first_labevent_id + np.arange(len(labs)))

    vent_rows = np.flatnonzero(on_vent)
    charted = pd.concat([
        pd.DataFrame({"itemid": FIO2, "valuenum": fio2[vent_rows], "valueuom": "%", "value": None,
                      "charttime": (lab_times.iloc[vent_rows] - pd.Timedelta(minutes=40)).to_numpy()}),
        pd.DataFrame({"itemid": VENT_MODE, "valuenum": np.nan, "valueuom": None, "value": "CMV/ASSIST/AutoFlow",
                      "charttime": (lab_times.iloc[vent_rows] - pd.Timedelta(minutes=45)).to_numpy()}),
    ], ignore_index=True)
    rows = np.concatenate([index[vent_rows], index[vent_rows]])
    charted = charted.assign(subject_id=subject[rows], hadm_id=hadm[rows], stay_id=stay[rows], warning=0)
    charted["value"] = charted["value"].fillna(charted["valuenum"].map(lambda v: f"{v:g}"))
    charted["storetime"] = charted["charttime"] + pd.Timedelta(minutes=10)

    # urine every 4 h, scant where the kidneys (tabular risk) fail
    slots = np.maximum(1, (los_h // 4).astype(int))
    index = np.repeat(np.arange(n), slots)
    hours = (np.arange(len(index)) - np.repeat(np.cumsum(slots) - slots, slots)) * 4 + 3.5
    per_4h = np.clip(rng.normal(160 - 70 * np.maximum(risk[index], 0), 40), 0, None).round()
    urine = pd.DataFrame({"subject_id": subject[index], "hadm_id": hadm[index], "stay_id": stay[index],
                          "charttime": _hours(intime[index], hours), "itemid": FOLEY, "value": per_4h,
                          "valueuom": "ml"})
    urine["storetime"] = urine["charttime"] + pd.Timedelta(minutes=15)
    items = pd.DataFrame({"itemid": [FIO2, VENT_MODE, NOREPINEPHRINE, FOLEY],
                          "label": ["Inspired O2 Fraction", "Ventilator Mode", "Norepinephrine", "Foley"],
                          "linksto": ["chartevents", "chartevents", "inputevents", "outputevents"]})
    lab_items = pd.DataFrame({"itemid": [BILIRUBIN, PAO2, SPECIMEN_TYPE], "label": ["Bilirubin, Total", "pO2", "Specimen Type"],
                              "fluid": "Blood", "category": ["Chemistry", "Blood Gas", "Blood Gas"]})
    return {"mimiciv_icu.d_items": items, "mimiciv_hosp.d_labitems": lab_items,
            "mimiciv_hosp.prescriptions": prescriptions, "mimiciv_hosp.microbiologyevents": cultured,
            "mimiciv_icu.inputevents": inputs, "mimiciv_hosp.labevents": labs, "mimiciv_icu.chartevents": charted,
            "mimiciv_icu.outputevents": urine}
