-- The candidates of :name trained in one run (at :trained_at).
SELECT candidate, artifact_uri FROM vigil_models.model_versions
WHERE model_name = :name AND trained_at = :trained_at;
