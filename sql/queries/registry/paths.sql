SELECT model_name, version, artifact_uri, report_uri FROM vigil_models.model_versions;
