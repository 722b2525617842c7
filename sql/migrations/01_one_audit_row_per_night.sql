-- One audit row per night (publish replaces the night's row, pipeline/publish.py). A warehouse
-- written before that rule may hold several rows for a night: keep the latest publish of each
-- night and its row counts, then let the database enforce the rule. Idempotent.
DELETE FROM vigil_audit.runs
WHERE EXISTS (SELECT 1 FROM vigil_audit.runs later
              WHERE later.night = runs.night
                AND (later.published_at > runs.published_at
                     OR (later.published_at = runs.published_at AND later.run_id > runs.run_id)));
DELETE FROM vigil_audit.run_counts WHERE run_id NOT IN (SELECT run_id FROM vigil_audit.runs);
CREATE UNIQUE INDEX IF NOT EXISTS runs_one_per_night ON vigil_audit.runs (night);
