-- Every BI view is a security barrier (runs after the other files of this folder, by name):
-- its own filter runs before any condition a reader adds, so a reader's function in a WHERE
-- clause (a cheap function the planner would push down into the scan of risk_scores) never
-- sees a row the view does not return, such as an earlier night's scores.
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'vigil_risk' AND c.relkind = 'v'
    LOOP
        EXECUTE format('ALTER VIEW vigil_risk.%I SET (security_barrier = true)', v.relname);
    END LOOP;
END
$$;
