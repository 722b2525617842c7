-- vigil_features: what Vigil derives from the sources. Validated canonical events and records
-- accumulate here night by night (keyed by the night that ingested them, so re-running a night
-- replaces exactly its own rows), beside the embedding cache and the per-night stay features.

CREATE TABLE IF NOT EXISTS vigil_features.concept_map (
    source_table  VARCHAR(64) NOT NULL,     -- e.g. 'mimiciv_icu.chartevents'
    itemid        INTEGER NOT NULL,
    code          VARCHAR(64) NOT NULL,     -- canonical event code, e.g. 'VITAL//heart_rate'
    label         VARCHAR(100),
    source_unit   VARCHAR(20),              -- expected unit in the source; NULL = not recorded
    unit          VARCHAR(20),              -- canonical unit after conversion
    scale         DOUBLE PRECISION NOT NULL,        -- canonical = value * scale + offset_value
    offset_value  DOUBLE PRECISION NOT NULL,
    lower_bound   DOUBLE PRECISION,         -- physiologically possible range (canonical unit)
    upper_bound   DOUBLE PRECISION,
    lower_exclusive BOOLEAN,                -- TRUE: the quantity is strictly positive (the lower bound itself is impossible)
    PRIMARY KEY (source_table, itemid)
);

-- How the PhysioNet challenge files' parameters land in the MIMIC-IV source tables (loaded
-- from sql/concepts/physionet_items.sql). mimic_value = source value * scale.
CREATE TABLE IF NOT EXISTS vigil_features.source_item_map (
    source        VARCHAR(32) NOT NULL,     -- 'physionet2012' / 'physionet2019'
    parameter     VARCHAR(32) NOT NULL,     -- the file's parameter / column name
    target_table  VARCHAR(64) NOT NULL,     -- MIMIC-IV table the rows are written to
    itemid        INTEGER NOT NULL,
    label         VARCHAR(100),
    valueuom      VARCHAR(20),              -- MIMIC-IV unit after scaling
    scale         DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (source, parameter)
);

-- Severity scores that came with a source (PhysioNet 2012's SAPS-I and SOFA): evaluation
-- baselines, never model inputs.
CREATE TABLE IF NOT EXISTS vigil_features.reference_scores (
    stay_id       BIGINT NOT NULL,
    score         VARCHAR(32) NOT NULL,
    value         DOUBLE PRECISION,
    PRIMARY KEY (stay_id, score)
);

-- Clinical events that define labels or cohorts but are no source table's row (PhysioNet
-- 2019's sepsis onset, derived from SepsisLabel; a registry's enrolments, biopsy grades and
-- follow-up): read by label and cohort queries, never by features.
CREATE TABLE IF NOT EXISTS vigil_features.outcome_events (
    stay_id       BIGINT NOT NULL,
    outcome       VARCHAR(32) NOT NULL,     -- e.g. 'sepsis_onset', 'cohort_pe_thrombolysis', 'steatosis_grade'
    event_time    TIMESTAMP NOT NULL,       -- when it happened (and was known)
    value         DOUBLE PRECISION,         -- e.g. the grade; empty for a plain event
    PRIMARY KEY (stay_id, outcome)
);

CREATE TABLE IF NOT EXISTS vigil_features.stay_events (
    stay_id        BIGINT NOT NULL,
    time           TIMESTAMP NOT NULL,      -- chart time
    code           VARCHAR(64) NOT NULL,
    value          DOUBLE PRECISION NOT NULL,
    unit           VARCHAR(20),
    arrival_time   TIMESTAMP NOT NULL,      -- store time: when Vigil could first have seen it
    source_table   VARCHAR(64) NOT NULL,
    source_row_id  VARCHAR(64) NOT NULL,
    ingest_night   DATE NOT NULL            -- the night that extracted and validated it
);

CREATE TABLE IF NOT EXISTS vigil_features.stay_records (
    modality      VARCHAR(16) NOT NULL,     -- 'note' / 'ecg' / 'image'
    record_id     VARCHAR(64) NOT NULL,
    stay_id       BIGINT NOT NULL,
    time          TIMESTAMP NOT NULL,
    arrival_time  TIMESTAMP NOT NULL,
    category      VARCHAR(64),              -- note type, ECG lead set, imaging modality
    uri           VARCHAR(255),             -- file-store path for ECG / imaging
    text          TEXT,                     -- note text
    content_hash  VARCHAR(64) NOT NULL,     -- sha256 of the text or file bytes
    ingest_night  DATE NOT NULL,
    PRIMARY KEY (modality, record_id)
);

CREATE TABLE IF NOT EXISTS vigil_features.embeddings (
    encoder_id    VARCHAR(128) NOT NULL,    -- encoder name @ version (weights digest)
    content_hash  VARCHAR(64) NOT NULL,
    modality      VARCHAR(16) NOT NULL,
    dim           INTEGER NOT NULL,
    vector        BYTEA NOT NULL,           -- little-endian float32[dim]
    PRIMARY KEY (encoder_id, content_hash)
);

CREATE TABLE IF NOT EXISTS vigil_features.stay_features (
    night            DATE NOT NULL,
    stay_id          BIGINT NOT NULL,
    prediction_time  TIMESTAMP NOT NULL,
    feature          VARCHAR(128) NOT NULL,
    value            DOUBLE PRECISION
);

CREATE INDEX IF NOT EXISTS stay_events_stay_time_idx ON vigil_features.stay_events (stay_id, time);
CREATE INDEX IF NOT EXISTS stay_events_night_idx ON vigil_features.stay_events (ingest_night);
CREATE INDEX IF NOT EXISTS stay_events_row_idx ON vigil_features.stay_events (source_row_id);
CREATE INDEX IF NOT EXISTS stay_records_stay_idx ON vigil_features.stay_records (stay_id);
CREATE INDEX IF NOT EXISTS stay_features_night_idx ON vigil_features.stay_features (night);

-- Which prescription drug names are systemic antimicrobials (Sepsis-3's suspected infection,
-- sql/extract/cohort_sepsis3.sql): LIKE patterns on the lower-cased drug name, loaded from
-- sql/concepts/antibiotics.sql.
CREATE TABLE IF NOT EXISTS vigil_features.antibiotic_names (
    pattern       VARCHAR(64) NOT NULL PRIMARY KEY,   -- e.g. '%vancomycin%'
    drug_class    VARCHAR(40) NOT NULL
);
