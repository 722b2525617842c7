-- vigil_models: the model registry. One row per trained candidate; the nightly run scores
-- with the version whose `promoted` flag is set (one per model_name). Training marks its best
-- candidate `selected`; promotion is a separate, explicit step (`vigil promote`).

CREATE TABLE IF NOT EXISTS vigil_models.model_versions (
    model_name       VARCHAR(64) NOT NULL,   -- the spec's name (models/<name>.yaml)
    version          VARCHAR(64) NOT NULL,   -- <UTC timestamp>-<candidate>
    candidate        VARCHAR(64) NOT NULL,   -- e.g. 'xgboost_tabular', 'early_fusion'
    task             VARCHAR(16) NOT NULL,   -- binary / multiclass / survival
    spec_sha256      VARCHAR(64) NOT NULL,
    training_as_of   TIMESTAMP NOT NULL,     -- no label or event after this time was used
    trained_at       TIMESTAMP NOT NULL,
    n_train          INTEGER NOT NULL,
    n_test           INTEGER NOT NULL,
    metrics_json     TEXT NOT NULL,          -- held-out metrics
    artifact_uri     VARCHAR(255) NOT NULL,  -- directory with the fitted object
    report_uri       VARCHAR(255),
    promoted         BOOLEAN NOT NULL,
    selected         BOOLEAN,                -- the best candidate of its training run (by the spec's metric)
    promoted_at      TIMESTAMP,              -- when it was last promoted
    data_snapshot    TEXT,                   -- JSON: examples, patients, rows per source table, watermark
    code_version     VARCHAR(64),            -- git commit (or package version) that trained it
    PRIMARY KEY (model_name, version)
);
