SELECT version FROM vigil_models.model_versions WHERE model_name = :name ORDER BY trained_at DESC;
