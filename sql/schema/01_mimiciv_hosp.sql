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

-- Medication orders and microbiology cultures: the two halves of Sepsis-3's suspected infection
-- (sql/extract/cohort_sepsis3.sql), as in mimic-code. Every column of the release, so the demo
-- CSVs and a site's mimic-code build load unchanged.
CREATE TABLE IF NOT EXISTS mimiciv_hosp.prescriptions (
    subject_id          INTEGER NOT NULL,
    hadm_id             INTEGER NOT NULL,
    pharmacy_id         INTEGER,
    poe_id              VARCHAR(25),
    poe_seq             INTEGER,
    order_provider_id   VARCHAR(10),
    starttime           TIMESTAMP,          -- when the order starts: the antibiotic time
    stoptime            TIMESTAMP,
    drug_type           VARCHAR(20),
    drug                VARCHAR(255),       -- free-text drug name (antibiotics are matched on it)
    formulary_drug_cd   VARCHAR(50),
    gsn                 VARCHAR(255),
    ndc                 VARCHAR(25),
    prod_strength       VARCHAR(255),
    form_rx             VARCHAR(25),
    dose_val_rx         VARCHAR(100),
    dose_unit_rx        VARCHAR(50),
    form_val_disp       VARCHAR(50),
    form_unit_disp      VARCHAR(50),
    doses_per_24_hrs    REAL,
    route               VARCHAR(50)         -- topical / ophthalmic / otic routes are not systemic
);

CREATE TABLE IF NOT EXISTS mimiciv_hosp.microbiologyevents (
    microevent_id         INTEGER NOT NULL,
    subject_id            INTEGER NOT NULL,
    hadm_id               INTEGER,
    micro_specimen_id     INTEGER NOT NULL,  -- one per specimen (a culture has many result rows)
    order_provider_id     VARCHAR(10),
    chartdate             TIMESTAMP,
    charttime             TIMESTAMP,         -- when the specimen was drawn (empty: only the date is known)
    spec_itemid           INTEGER,
    spec_type_desc        VARCHAR(100),
    test_seq              INTEGER,
    storedate             TIMESTAMP,
    storetime             TIMESTAMP,         -- when the result row was filed
    test_itemid           INTEGER,
    test_name             VARCHAR(100),
    org_itemid            INTEGER,
    org_name              VARCHAR(100),
    isolate_num           SMALLINT,
    quantity              VARCHAR(50),
    ab_itemid             INTEGER,
    ab_name               VARCHAR(30),
    dilution_text         VARCHAR(10),
    dilution_comparison   VARCHAR(20),
    dilution_value        DOUBLE PRECISION,
    interpretation        VARCHAR(5),
    comments              TEXT
);

CREATE INDEX IF NOT EXISTS prescriptions_subject_idx ON mimiciv_hosp.prescriptions (subject_id);
CREATE INDEX IF NOT EXISTS microbiologyevents_subject_idx ON mimiciv_hosp.microbiologyevents (subject_id);
