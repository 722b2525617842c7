-- Cached vectors of :encoder for the content hashes in :values.
SELECT content_hash, vector FROM vigil_features.embeddings
WHERE encoder_id = :encoder AND content_hash IN :values;
