-- No version of :name is promoted.
UPDATE vigil_models.model_versions SET promoted = :no WHERE model_name = :name;
