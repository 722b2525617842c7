-- The selected version of each training run of :name, latest first.
SELECT version FROM vigil_models.model_versions
WHERE model_name = :name AND selected = :yes
ORDER BY trained_at DESC;
