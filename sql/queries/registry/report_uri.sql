SELECT report_uri FROM vigil_models.model_versions WHERE model_name = :model_name AND version = :version;
