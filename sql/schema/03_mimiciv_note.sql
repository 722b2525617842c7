-- MIMIC-IV-Note layout: free-text notes. `radiology` reports arrive during the stay;
-- `discharge` summaries are written at discharge and so never reach a score for an active stay.

CREATE TABLE IF NOT EXISTS mimiciv_note.radiology (
    note_id     VARCHAR(25) NOT NULL,
    subject_id  INTEGER NOT NULL,
    hadm_id     INTEGER,
    note_type   VARCHAR(2),                -- 'RR' report, 'AR' addendum
    note_seq    INTEGER,
    charttime   TIMESTAMP,
    storetime   TIMESTAMP,
    text        TEXT
);

CREATE TABLE IF NOT EXISTS mimiciv_note.discharge (
    note_id     VARCHAR(25) NOT NULL,
    subject_id  INTEGER NOT NULL,
    hadm_id     INTEGER,
    note_type   VARCHAR(2),                -- 'DS' discharge summary
    note_seq    INTEGER,
    charttime   TIMESTAMP,
    storetime   TIMESTAMP,
    text        TEXT
);

CREATE INDEX IF NOT EXISTS radiology_storetime_idx ON mimiciv_note.radiology (storetime);
CREATE INDEX IF NOT EXISTS discharge_storetime_idx ON mimiciv_note.discharge (storetime);
