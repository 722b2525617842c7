UPDATE vigil_models.model_versions SET artifact_uri = :artifact, report_uri = :report
WHERE model_name = :name AND version = :v;
