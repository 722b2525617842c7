-- A source's item map (PhysioNet parameter -> Vigil code).
SELECT * FROM vigil_features.source_item_map WHERE source = :source;
