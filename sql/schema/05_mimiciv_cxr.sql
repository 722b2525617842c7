-- MIMIC-CXR layout: DICOM record list (`path` relative to VIGIL_FILESTORE) and metadata.
-- `modality` is a Vigil addition (MIMIC-CXR is all CR/DX) so other imaging studies fit too.

CREATE TABLE IF NOT EXISTS mimiciv_cxr.record_list (
    subject_id  INTEGER NOT NULL,
    study_id    INTEGER NOT NULL,
    dicom_id    VARCHAR(64) NOT NULL,       -- one per image
    path        VARCHAR(255)
);

CREATE TABLE IF NOT EXISTS mimiciv_cxr.metadata (
    dicom_id                          VARCHAR(64) NOT NULL,
    subject_id                        INTEGER NOT NULL,
    study_id                          INTEGER NOT NULL,
    performedprocedurestepdescription VARCHAR(128),
    viewposition                      VARCHAR(16),   -- PA / AP / LATERAL
    rows                              INTEGER,
    columns                           INTEGER,
    studydate                         INTEGER,       -- YYYYMMDD
    studytime                         DOUBLE PRECISION, -- HHMMSS.fff
    modality                          VARCHAR(16)    -- CR / DX / US / CT / ...
);

CREATE INDEX IF NOT EXISTS cxr_metadata_dicom_idx ON mimiciv_cxr.metadata (dicom_id);
