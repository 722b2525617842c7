SELECT * FROM vigil_models.model_versions WHERE model_name = :name AND promoted = :yes;
