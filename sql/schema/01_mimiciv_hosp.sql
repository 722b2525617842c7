-- MIMIC-IV hosp module: the subset of tables Vigil reads, with the column names and types of
-- mimic-code's `mimic-iv/buildmimic/postgres/create.sql`, so a site that built MIMIC-IV with
-- those scripts can point VIGIL_WAREHOUSE_URL at it unchanged.
-- Key constraints are left to the source system: Vigil validates and quarantines instead.

CREATE TABLE IF NOT EXISTS mimiciv_hosp.patients (
    subject_id          INTEGER NOT NULL,   -- one per patient
    gender              VARCHAR(1),         -- 'F' / 'M'
    anchor_age          SMALLINT,           -- age in anchor_year
    anchor_year         SMALLINT,           -- shifted year the anchor_age refers to
    anchor_year_group   VARCHAR(20),
    dod                 DATE                -- date of death, if known
);

CREATE TABLE IF NOT EXISTS mimiciv_hosp.admissions (
    subject_id           INTEGER NOT NULL,
    hadm_id              INTEGER NOT NULL,  -- one per hospital admission
    admittime            TIMESTAMP,
    dischtime            TIMESTAMP,
    deathtime            TIMESTAMP,         -- in-hospital death time
    admission_type       VARCHAR(40),
    admit_provider_id    VARCHAR(10),
    admission_location   VARCHAR(60),
    discharge_location   VARCHAR(60),
    insurance            VARCHAR(255),
    language             VARCHAR(25),
    marital_status       VARCHAR(30),
    race                 VARCHAR(80),
    edregtime            TIMESTAMP,
    edouttime            TIMESTAMP,
    hospital_expire_flag SMALLINT           -- 1 = died in hospital
);

CREATE TABLE IF NOT EXISTS mimiciv_hosp.d_labitems (
    itemid    INTEGER NOT NULL,
    label     VARCHAR(50),
    fluid     VARCHAR(50),
    category  VARCHAR(50)
);

CREATE TABLE IF NOT EXISTS mimiciv_hosp.labevents (
    labevent_id        INTEGER NOT NULL,
    subject_id         INTEGER NOT NULL,
    hadm_id            INTEGER,            -- often empty for outpatient draws
    specimen_id        INTEGER,
    itemid             INTEGER NOT NULL,
    order_provider_id  VARCHAR(10),
    charttime          TIMESTAMP,          -- when the specimen was drawn
    storetime          TIMESTAMP,          -- when the result was available: Vigil's arrival time
    value              VARCHAR(200),
    valuenum           DOUBLE PRECISION,
    valueuom           VARCHAR(20),
    ref_range_lower    DOUBLE PRECISION,
    ref_range_upper    DOUBLE PRECISION,
    flag               VARCHAR(10),
    priority           VARCHAR(7),
    comments           TEXT
);

CREATE INDEX IF NOT EXISTS labevents_storetime_idx ON mimiciv_hosp.labevents (storetime);
CREATE INDEX IF NOT EXISTS labevents_subject_idx ON mimiciv_hosp.labevents (subject_id);
CREATE INDEX IF NOT EXISTS admissions_hadm_idx ON mimiciv_hosp.admissions (hadm_id);
CREATE INDEX IF NOT EXISTS patients_subject_idx ON mimiciv_hosp.patients (subject_id);
