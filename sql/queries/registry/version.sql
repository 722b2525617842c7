SELECT version, artifact_uri FROM vigil_models.model_versions WHERE model_name = :name AND version = :v;
