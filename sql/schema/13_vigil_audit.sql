-- vigil_audit: one row per run, per-table row accounting, data-quality results, quarantined
-- rows with their reasons, excluded rows with theirs, and the extraction watermarks (advanced only when a night publishes).

CREATE TABLE IF NOT EXISTS vigil_audit.runs (
    run_id           VARCHAR(64) NOT NULL PRIMARY KEY,
    night            DATE NOT NULL,
    prediction_time  TIMESTAMP NOT NULL,
    started_at       TIMESTAMP NOT NULL,
    published_at     TIMESTAMP NOT NULL,
    status           VARCHAR(16) NOT NULL,
    stays_active     INTEGER NOT NULL,
    stays_scored     INTEGER NOT NULL,
    stays_unscored   INTEGER NOT NULL DEFAULT 0,  -- active stays with no data at all (see exclusions)
    risk_rows        INTEGER NOT NULL,
    risk_rows_sha256 VARCHAR(64) NOT NULL,    -- digest of the night's risk rows, for idempotency checks
    content_sha256   VARCHAR(64),             -- digest of everything the publish wrote (a retry with the same skips)
    models           TEXT NOT NULL            -- JSON {model_name: version}
);

CREATE TABLE IF NOT EXISTS vigil_audit.run_counts (
    run_id        VARCHAR(64) NOT NULL,
    night         DATE NOT NULL,
    source_table  VARCHAR(64) NOT NULL,       -- canonical table: cohort / events / notes / ecgs / images
    records_in    INTEGER NOT NULL,
    used          INTEGER NOT NULL,
    quarantined   INTEGER NOT NULL,
    excluded      INTEGER NOT NULL,           -- dropped by the cohort definition or as exact duplicates
    PRIMARY KEY (run_id, source_table)
);

CREATE TABLE IF NOT EXISTS vigil_audit.dq_results (
    night            DATE NOT NULL,
    source_table     VARCHAR(64) NOT NULL,
    expectation      VARCHAR(128) NOT NULL,
    column_name      VARCHAR(128),
    success          BOOLEAN NOT NULL,
    element_count    INTEGER NOT NULL,
    unexpected_count INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS vigil_audit.quarantine (
    night         DATE NOT NULL,
    source_table  VARCHAR(64) NOT NULL,
    record_id     VARCHAR(64) NOT NULL,       -- source row id (never the value of a note)
    stay_id       BIGINT,
    reason        VARCHAR(255) NOT NULL,
    check_name    VARCHAR(128) NOT NULL       -- the expectation or reader check that failed
);

CREATE TABLE IF NOT EXISTS vigil_audit.exclusions (
    night         DATE NOT NULL,
    source_table  VARCHAR(64) NOT NULL,
    record_id     VARCHAR(64) NOT NULL,       -- source row id, or the stay id for an unscored stay
    stay_id       BIGINT,
    reason        VARCHAR(255) NOT NULL       -- outside the cohort definition, exact duplicate, no data to score
);

CREATE TABLE IF NOT EXISTS vigil_audit.watermarks (
    source_table  VARCHAR(64) NOT NULL,
    night         DATE NOT NULL,
    high_water    TIMESTAMP NOT NULL,         -- rows that arrived up to here are ingested
    PRIMARY KEY (source_table, night)
);

CREATE INDEX IF NOT EXISTS quarantine_night_idx ON vigil_audit.quarantine (night);
CREATE INDEX IF NOT EXISTS dq_results_night_idx ON vigil_audit.dq_results (night);
CREATE INDEX IF NOT EXISTS exclusions_night_idx ON vigil_audit.exclusions (night);
CREATE INDEX IF NOT EXISTS runs_night_idx ON vigil_audit.runs (night);

-- Monitoring, written by each night's report stage (and replaced when the night re-runs).
CREATE TABLE IF NOT EXISTS vigil_audit.drift (
    night          DATE NOT NULL,
    model_name     VARCHAR(64) NOT NULL,
    model_version  VARCHAR(64) NOT NULL,
    feature        VARCHAR(255) NOT NULL,    -- a numeric input feature, or 'score' (the probability)
    psi            DOUBLE PRECISION NOT NULL, -- vs the training distribution: < 0.1 stable, > 0.25 shifted
    PRIMARY KEY (night, model_name, feature)
);

CREATE TABLE IF NOT EXISTS vigil_audit.performance (
    night                  DATE NOT NULL,    -- the night whose report computed it (outcomes known by then)
    model_name             VARCHAR(64) NOT NULL,
    model_version          VARCHAR(64) NOT NULL,
    scored_night           DATE NOT NULL,    -- the night the scores were made
    labelled               INTEGER NOT NULL, -- scored stays whose outcome is known
    positives              INTEGER NOT NULL,
    auroc                  DOUBLE PRECISION, -- NULL while only one outcome has been seen
    brier                  DOUBLE PRECISION,
    calibration_slope      DOUBLE PRECISION,
    calibration_intercept  DOUBLE PRECISION,
    mean_predicted         DOUBLE PRECISION,
    observed_rate          DOUBLE PRECISION,
    PRIMARY KEY (night, model_name, model_version, scored_night)
);

-- The conditions each night's report raised (drift of a model version, a table's quarantined
-- share): an alert goes out when a condition starts, not on every night it holds.
CREATE TABLE IF NOT EXISTS vigil_audit.alerts (
    night          DATE NOT NULL,
    condition_key  VARCHAR(255) NOT NULL,    -- e.g. 'drift:icu_mortality:<version>', 'data_quality:events'
    title          VARCHAR(512) NOT NULL,
    started        BOOLEAN NOT NULL,         -- it did not hold the night before (its alert was sent)
    PRIMARY KEY (night, condition_key)
);
