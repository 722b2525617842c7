-- Published severity scores (SOFA, SAPS, ...) of the stays in :values.
SELECT stay_id, score, value FROM vigil_features.reference_scores WHERE stay_id IN :values;
