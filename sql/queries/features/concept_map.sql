-- The concept map: source item -> Vigil code, unit conversion and plausibility bounds.
SELECT * FROM vigil_features.concept_map;
