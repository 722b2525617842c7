-- vigil_risk: the nightly risk table. Key (night, stay_id, model_name): re-running a night
-- replaces exactly its rows in one transaction. Nothing run-specific is stored here, so
-- re-runs are byte-identical; run metadata lives in vigil_audit.runs.

CREATE TABLE IF NOT EXISTS vigil_risk.risk_scores (
    night            DATE NOT NULL,           -- the logical date D; scored as of D+1 00:00 UTC
    stay_id          BIGINT NOT NULL,
    model_name       VARCHAR(64) NOT NULL,
    subject_id       BIGINT NOT NULL,
    model_version    VARCHAR(64) NOT NULL,
    prediction_time  TIMESTAMP NOT NULL,
    probability      DOUBLE PRECISION NOT NULL,  -- binary: P(outcome); multiclass: P(any class but the first);
                                              -- survival: P(event within the spec's horizon)
    risk_band        VARCHAR(16) NOT NULL,    -- from the spec's risk bands
    operating_threshold DOUBLE PRECISION,     -- the spec's alert threshold: an alert when probability >= it
    modalities       VARCHAR(64) NOT NULL,    -- modalities present, e.g. 'tabular+notes+ecg'
    top_factors      TEXT NOT NULL,           -- JSON list of {factor, contribution, value}
    outputs          TEXT,                    -- JSON: multiclass {class: probability}; survival {log_hazard, horizon_days}
    modality_contributions TEXT,              -- JSON {modality: term}: late fusion's stacker terms
    PRIMARY KEY (night, stay_id, model_name)
);
