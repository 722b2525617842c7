-- MIMIC-IV icu module: ICU stays, the charted-item dictionary and charted events, as in
-- mimic-code's `mimic-iv/buildmimic/postgres/create.sql`.

CREATE TABLE IF NOT EXISTS mimiciv_icu.icustays (
    subject_id      INTEGER NOT NULL,
    hadm_id         INTEGER NOT NULL,
    stay_id         INTEGER NOT NULL,       -- one per ICU stay: Vigil's scoring unit
    first_careunit  VARCHAR(255),
    last_careunit   VARCHAR(255),
    intime          TIMESTAMP,
    outtime         TIMESTAMP,              -- empty while the patient is in the ICU
    los             DOUBLE PRECISION        -- days
);

CREATE TABLE IF NOT EXISTS mimiciv_icu.d_items (
    itemid           INTEGER NOT NULL,
    label            VARCHAR(100),
    abbreviation     VARCHAR(50),
    linksto          VARCHAR(30),
    category         VARCHAR(50),
    unitname         VARCHAR(50),
    param_type       VARCHAR(20),
    lownormalvalue   DOUBLE PRECISION,
    highnormalvalue  DOUBLE PRECISION
);

CREATE TABLE IF NOT EXISTS mimiciv_icu.chartevents (
    subject_id    INTEGER NOT NULL,
    hadm_id       INTEGER,
    stay_id       INTEGER,
    caregiver_id  INTEGER,
    charttime     TIMESTAMP,               -- when the value was observed
    storetime     TIMESTAMP,               -- when it was validated: Vigil's arrival time
    itemid        INTEGER NOT NULL,
    value         VARCHAR(200),
    valuenum      DOUBLE PRECISION,
    valueuom      VARCHAR(20),
    warning       SMALLINT
);

CREATE INDEX IF NOT EXISTS icustays_stay_idx ON mimiciv_icu.icustays (stay_id);
CREATE INDEX IF NOT EXISTS icustays_subject_idx ON mimiciv_icu.icustays (subject_id);
CREATE INDEX IF NOT EXISTS chartevents_storetime_idx ON mimiciv_icu.chartevents (storetime);
CREATE INDEX IF NOT EXISTS chartevents_stay_idx ON mimiciv_icu.chartevents (stay_id);
-- subject_id: extraction reads shards of subjects (pipeline/sources/mimic.py: subject_shards)
CREATE INDEX IF NOT EXISTS chartevents_subject_idx ON mimiciv_icu.chartevents (subject_id);

-- Output events (urine and drain volumes), as in mimic-code. Charted like chartevents: one
-- volume per row at charttime, validated at storetime.
CREATE TABLE IF NOT EXISTS mimiciv_icu.outputevents (
    subject_id    INTEGER NOT NULL,
    hadm_id       INTEGER,
    stay_id       INTEGER,
    caregiver_id  INTEGER,
    charttime     TIMESTAMP,
    storetime     TIMESTAMP,
    itemid        INTEGER NOT NULL,
    value         DOUBLE PRECISION,
    valueuom      VARCHAR(20)
);

CREATE INDEX IF NOT EXISTS outputevents_storetime_idx ON mimiciv_icu.outputevents (storetime);
CREATE INDEX IF NOT EXISTS outputevents_stay_idx ON mimiciv_icu.outputevents (stay_id);
CREATE INDEX IF NOT EXISTS outputevents_subject_idx ON mimiciv_icu.outputevents (subject_id);

-- Infusions and boluses (vasopressor rates for Sepsis-3's cardiovascular SOFA), as in mimic-code.
CREATE TABLE IF NOT EXISTS mimiciv_icu.inputevents (
    subject_id                      INTEGER NOT NULL,
    hadm_id                         INTEGER,
    stay_id                         INTEGER,
    caregiver_id                    INTEGER,
    starttime                       TIMESTAMP,
    endtime                         TIMESTAMP,
    storetime                       TIMESTAMP,
    itemid                          INTEGER NOT NULL,
    amount                          DOUBLE PRECISION,
    amountuom                       VARCHAR(20),
    rate                            DOUBLE PRECISION,
    rateuom                         VARCHAR(20),   -- vasopressors: mcg/kg/min (mimic-code's unit)
    orderid                         INTEGER,
    linkorderid                     INTEGER,
    ordercategoryname               VARCHAR(50),
    secondaryordercategoryname      VARCHAR(50),
    ordercomponenttypedescription   VARCHAR(100),
    ordercategorydescription        VARCHAR(30),
    patientweight                   DOUBLE PRECISION,
    totalamount                     DOUBLE PRECISION,
    totalamountuom                  VARCHAR(50),
    isopenbag                       SMALLINT,
    continueinnextdept              SMALLINT,
    statusdescription               VARCHAR(20),
    originalamount                  DOUBLE PRECISION,
    originalrate                    DOUBLE PRECISION
);

CREATE INDEX IF NOT EXISTS inputevents_stay_idx ON mimiciv_icu.inputevents (stay_id);
