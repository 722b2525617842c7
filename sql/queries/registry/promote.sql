UPDATE vigil_models.model_versions SET promoted = :yes, promoted_at = :at
WHERE model_name = :name AND version = :v;
