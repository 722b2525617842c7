-- Every registered version, latest training first (the Vigil page).
SELECT model_name, version, candidate, trained_at, training_as_of, metrics_json, report_uri, promoted
FROM vigil_models.model_versions
ORDER BY trained_at DESC, model_name, version;
