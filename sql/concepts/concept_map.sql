-- Vigil concept map: which MIMIC-IV items become which canonical event codes, their expected
-- source unit, the conversion to the canonical unit (canonical = value * scale + offset_value)
-- and the physiologically possible range. A value outside the range is quarantined with a
-- reason, never silently dropped; an item not listed here is excluded from extraction counts
-- as "not a mapped concept". Bounds follow mimic-code's concepts (measurement/vitalsign.sql,
-- measurement/chemistry.sql) where those give them.
-- Loaded by `vigil init`; edit this file and re-run `vigil init` to change the mapping.

DELETE FROM vigil_features.concept_map;

INSERT INTO vigil_features.concept_map
    (source_table, itemid, code, label, source_unit, unit, scale, offset_value, lower_bound, upper_bound)
VALUES
    -- vital signs, mimiciv_icu.chartevents
    ('mimiciv_icu.chartevents', 220045, 'VITAL//heart_rate',  'Heart Rate',                         'bpm',      'bpm',      1, 0, 0, 300),
    ('mimiciv_icu.chartevents', 220179, 'VITAL//sbp',         'Non Invasive Blood Pressure systolic', 'mmHg',   'mmHg',     1, 0, 0, 400),
    ('mimiciv_icu.chartevents', 220050, 'VITAL//sbp',         'Arterial Blood Pressure systolic',   'mmHg',     'mmHg',     1, 0, 0, 400),
    ('mimiciv_icu.chartevents', 220180, 'VITAL//dbp',         'Non Invasive Blood Pressure diastolic', 'mmHg',  'mmHg',     1, 0, 0, 300),
    ('mimiciv_icu.chartevents', 220051, 'VITAL//dbp',         'Arterial Blood Pressure diastolic',  'mmHg',     'mmHg',     1, 0, 0, 300),
    ('mimiciv_icu.chartevents', 220181, 'VITAL//mbp',         'Non Invasive Blood Pressure mean',   'mmHg',     'mmHg',     1, 0, 0, 300),
    ('mimiciv_icu.chartevents', 220052, 'VITAL//mbp',         'Arterial Blood Pressure mean',       'mmHg',     'mmHg',     1, 0, 0, 300),
    ('mimiciv_icu.chartevents', 220210, 'VITAL//resp_rate',   'Respiratory Rate',                   'insp/min', 'insp/min', 1, 0, 0, 70),
    ('mimiciv_icu.chartevents', 220277, 'VITAL//spo2',        'O2 saturation pulseoxymetry',        '%',        '%',        1, 0, 0, 100),
    ('mimiciv_icu.chartevents', 223761, 'VITAL//temperature', 'Temperature Fahrenheit',             '°F',       '°C',       0.5555555555555556, -17.77777777777778, 10, 50),
    ('mimiciv_icu.chartevents', 223762, 'VITAL//temperature', 'Temperature Celsius',                '°C',       '°C',       1, 0, 10, 50),
    ('mimiciv_icu.chartevents', 220739, 'VITAL//gcs_eye',     'GCS - Eye Opening',                  NULL,       'score',    1, 0, 1, 4),
    ('mimiciv_icu.chartevents', 223900, 'VITAL//gcs_verbal',  'GCS - Verbal Response',              NULL,       'score',    1, 0, 1, 5),
    ('mimiciv_icu.chartevents', 223901, 'VITAL//gcs_motor',   'GCS - Motor Response',               NULL,       'score',    1, 0, 1, 6),
    ('mimiciv_icu.chartevents', 220621, 'VITAL//glucose',     'Glucose (serum)',                    'mg/dL',    'mg/dL',    1, 0, 0, 3000),
    ('mimiciv_icu.chartevents', 225664, 'VITAL//glucose',     'Glucose finger stick (range 70-100)', NULL,      'mg/dL',    1, 0, 0, 3000),
    ('mimiciv_icu.chartevents', 226512, 'VITAL//weight',      'Admission Weight (Kg)',              'kg',       'kg',       1, 0, 0.5, 500),
    -- laboratory results, mimiciv_hosp.labevents
    ('mimiciv_hosp.labevents', 50813, 'LAB//lactate',         'Lactate',                 'mmol/L', 'mmol/L', 1, 0, 0, 50),
    ('mimiciv_hosp.labevents', 50912, 'LAB//creatinine',      'Creatinine',              'mg/dL',  'mg/dL',  1, 0, 0, 150),
    ('mimiciv_hosp.labevents', 51006, 'LAB//bun',             'Urea Nitrogen',           'mg/dL',  'mg/dL',  1, 0, 0, 300),
    ('mimiciv_hosp.labevents', 50983, 'LAB//sodium',          'Sodium',                  'mEq/L',  'mEq/L',  1, 0, 60, 200),
    ('mimiciv_hosp.labevents', 50971, 'LAB//potassium',       'Potassium',               'mEq/L',  'mEq/L',  1, 0, 0.5, 30),
    ('mimiciv_hosp.labevents', 50902, 'LAB//chloride',        'Chloride',                'mEq/L',  'mEq/L',  1, 0, 40, 200),
    ('mimiciv_hosp.labevents', 50882, 'LAB//bicarbonate',     'Bicarbonate',             'mEq/L',  'mEq/L',  1, 0, 0, 80),
    ('mimiciv_hosp.labevents', 50868, 'LAB//anion_gap',       'Anion Gap',               'mEq/L',  'mEq/L',  1, 0, -20, 80),
    ('mimiciv_hosp.labevents', 50931, 'LAB//glucose',         'Glucose',                 'mg/dL',  'mg/dL',  1, 0, 0, 3000),
    ('mimiciv_hosp.labevents', 50960, 'LAB//magnesium',       'Magnesium',               'mg/dL',  'mg/dL',  1, 0, 0, 20),
    ('mimiciv_hosp.labevents', 50893, 'LAB//calcium',         'Calcium, Total',          'mg/dL',  'mg/dL',  1, 0, 0, 30),
    ('mimiciv_hosp.labevents', 51301, 'LAB//wbc',             'White Blood Cells',       'K/uL',   'K/uL',   1, 0, 0, 1000),
    ('mimiciv_hosp.labevents', 51222, 'LAB//hemoglobin',      'Hemoglobin',              'g/dL',   'g/dL',   1, 0, 0, 30),
    ('mimiciv_hosp.labevents', 51265, 'LAB//platelets',       'Platelet Count',          'K/uL',   'K/uL',   1, 0, 0, 3000),
    ('mimiciv_hosp.labevents', 50885, 'LAB//bilirubin_total', 'Bilirubin, Total',        'mg/dL',  'mg/dL',  1, 0, 0, 100),
    ('mimiciv_hosp.labevents', 51237, 'LAB//inr',             'INR(PT)',                 NULL,     'ratio',  1, 0, 0, 30),
    ('mimiciv_hosp.labevents', 50862, 'LAB//albumin',         'Albumin',                 'g/dL',   'g/dL',   1, 0, 0, 10),
    ('mimiciv_hosp.labevents', 50820, 'LAB//ph',              'pH (blood gas)',          'units',  'units',  1, 0, 6.5, 8.0),
    ('mimiciv_hosp.labevents', 50821, 'LAB//po2',             'pO2 (blood gas)',         'mm Hg',  'mmHg',   1, 0, 0, 800),
    ('mimiciv_hosp.labevents', 50818, 'LAB//pco2',            'pCO2 (blood gas)',        'mm Hg',  'mmHg',   1, 0, 0, 250),
    ('mimiciv_hosp.labevents', 50817, 'LAB//sao2',             'Oxygen Saturation (blood gas)', '%', '%',     1, 0, 0, 100),
    ('mimiciv_hosp.labevents', 50802, 'LAB//base_excess',      'Base Excess',             'mEq/L',  'mEq/L',  1, 0, -50, 50),
    ('mimiciv_hosp.labevents', 50863, 'LAB//alp',              'Alkaline Phosphatase',    'IU/L',   'IU/L',   1, 0, 0, 10000),
    ('mimiciv_hosp.labevents', 50861, 'LAB//alt',              'Alanine Aminotransferase (ALT)', 'IU/L', 'IU/L', 1, 0, 0, 20000),
    ('mimiciv_hosp.labevents', 50878, 'LAB//ast',              'Asparate Aminotransferase (AST)', 'IU/L', 'IU/L', 1, 0, 0, 40000),
    ('mimiciv_hosp.labevents', 50883, 'LAB//bilirubin_direct', 'Bilirubin, Direct',       'mg/dL',  'mg/dL',  1, 0, 0, 100),
    ('mimiciv_hosp.labevents', 50907, 'LAB//cholesterol',      'Cholesterol, Total',      'mg/dL',  'mg/dL',  1, 0, 0, 2000),
    ('mimiciv_hosp.labevents', 50970, 'LAB//phosphate',        'Phosphate',               'mg/dL',  'mg/dL',  1, 0, 0, 50),
    ('mimiciv_hosp.labevents', 51221, 'LAB//hematocrit',       'Hematocrit',              '%',      '%',      1, 0, 0, 100),
    ('mimiciv_hosp.labevents', 51275, 'LAB//ptt',              'PTT',                     'sec',    'sec',    1, 0, 0, 300),
    ('mimiciv_hosp.labevents', 51214, 'LAB//fibrinogen',       'Fibrinogen, Functional',  'mg/dL',  'mg/dL',  1, 0, 0, 2000),
    ('mimiciv_hosp.labevents', 51002, 'LAB//troponin_i',       'Troponin I',              'ng/mL',  'ng/mL',  1, 0, 0, 1000),
    ('mimiciv_hosp.labevents', 51003, 'LAB//troponin_t',       'Troponin T',              'ng/mL',  'ng/mL',  1, 0, 0, 100),
    -- further charted items the PhysioNet challenge files carry (sql/concepts/physionet_items.sql)
    ('mimiciv_icu.chartevents', 198,    'VITAL//gcs_total',    'GCS Total (MIMIC-III CareVue item; MIMIC-IV charts the three components)', NULL, 'score', 1, 0, 3, 15),
    ('mimiciv_icu.chartevents', 226730, 'VITAL//height',       'Height (cm)',                        'cm',       'cm',       1, 0, 20, 300),
    ('mimiciv_icu.chartevents', 223835, 'VITAL//fio2',         'Inspired O2 Fraction',               '%',        '%',        1, 0, 21, 100),
    ('mimiciv_icu.chartevents', 225792, 'VITAL//invasive_ventilation', 'Invasive Ventilation (1 = on)', NULL,    'flag',     1, 0, 0, 1),
    ('mimiciv_icu.chartevents', 228640, 'VITAL//etco2',        'EtCO2',                              'mmHg',     'mmHg',     1, 0, 0, 150),
    -- output volumes, mimiciv_icu.outputevents
    ('mimiciv_icu.outputevents', 226559, 'OUTPUT//urine',      'Foley (urine output)',               'ml',       'mL',       1, 0, 0, 10000);

-- Strictly positive quantities: a living patient cannot have none, so a value at the lower
-- bound (0) is quarantined like one below it. Any minus sign, -0 included, on a quantity whose
-- range starts at or above 0 is quarantined as well (pipeline/validate/checks.py).
UPDATE vigil_features.concept_map SET lower_exclusive = TRUE
WHERE code IN ('LAB//creatinine', 'LAB//bun', 'LAB//glucose', 'VITAL//glucose', 'LAB//hemoglobin',
               'LAB//hematocrit', 'LAB//albumin', 'LAB//inr', 'LAB//ptt', 'LAB//po2', 'LAB//pco2',
               'LAB//calcium', 'LAB//magnesium', 'LAB//cholesterol', 'LAB//fibrinogen');
