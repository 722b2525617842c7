-- The latest :limit runs, newest first (the Vigil page).
SELECT run_id, night, prediction_time, started_at, published_at, status, stays_active,
       stays_scored, stays_unscored, risk_rows, models
FROM vigil_audit.runs
ORDER BY started_at DESC, run_id DESC
LIMIT :limit;
