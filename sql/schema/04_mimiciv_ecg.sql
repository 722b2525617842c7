-- MIMIC-IV-ECG layout: the diagnostic ECG record list (WFDB records in the file store, `path`
-- relative to VIGIL_FILESTORE, without extension) and the cart's machine measurements.

CREATE TABLE IF NOT EXISTS mimiciv_ecg.record_list (
    subject_id  INTEGER NOT NULL,
    study_id    INTEGER NOT NULL,           -- one per ECG
    file_name   VARCHAR(255),
    ecg_time    TIMESTAMP,
    path        VARCHAR(255)
);

CREATE TABLE IF NOT EXISTS mimiciv_ecg.machine_measurements (
    subject_id   INTEGER NOT NULL,
    study_id     INTEGER NOT NULL,
    cart_id      INTEGER,
    ecg_time     TIMESTAMP,
    report_0     TEXT,                      -- first line of the machine read
    bandwidth    VARCHAR(40),
    filtering    VARCHAR(40),
    rr_interval  INTEGER,                   -- ms
    p_onset      INTEGER,                   -- ms from the start of the beat template
    p_end        INTEGER,
    qrs_onset    INTEGER,
    qrs_end      INTEGER,
    t_end        INTEGER,
    p_axis       INTEGER,                   -- degrees
    qrs_axis     INTEGER,
    t_axis       INTEGER
);

CREATE INDEX IF NOT EXISTS ecg_record_time_idx ON mimiciv_ecg.record_list (ecg_time);
