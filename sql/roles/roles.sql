-- Least-privilege group roles for a PostgreSQL warehouse (`vigil init --roles`; never run on SQLite).
--
--   vigil_pipeline   the nightly run and training: reads the source schemas (mimiciv_*), reads
--                    and writes the rows of Vigil's own tables (vigil_*). No CREATE on any schema,
--                    no TRUNCATE, no DDL (it owns nothing), not a superuser.
--   vigil_bi_reader  BI tools: reads the views in vigil_risk and nothing else. A view runs with
--                    its owner's privileges, so it needs no grant on vigil_risk.risk_scores. It may
--                    create nothing (no TEMPORARY on the database, no CREATE on any schema).
--
-- Both are NOLOGIN groups. This file creates no login user and holds no password: a deployer
-- creates the users (password in a secret store) and grants them a group, for example
--     CREATE ROLE vigil_nightly LOGIN PASSWORD '...';  GRANT vigil_pipeline TO vigil_nightly;
--     CREATE ROLE metabase LOGIN PASSWORD '...';       GRANT vigil_bi_reader TO metabase;
-- and points VIGIL_WAREHOUSE_URL (Airflow's workers) at the pipeline user. The role that runs
-- `vigil init` owns the schemas and tables and is the only one that can change them.
--
-- Roles are cluster-wide and created here only when missing; grants are per database and made
-- in the current one. Run this as the owner of Vigil's schemas, after the schema exists: its
-- ALTER DEFAULT PRIVILEGES cover the tables that same role creates later. `vigil init` drops and
-- recreates the views, and with them the reader's grant on them: it re-applies this file where
-- the roles were granted before.
-- Idempotent: every run converges the two roles to exactly these privileges.
-- Warehouse.apply_roles runs each statement through SQLAlchemy's text(): write no `:name`
-- (it would be taken for a bind parameter), and keep each DO block between plain $$ quotes.

-- The roles (tolerating a concurrent run that creates them between the check and the CREATE).
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['vigil_pipeline', 'vigil_bi_reader'] LOOP
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
                EXECUTE format('CREATE ROLE %I NOLOGIN', name);
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
END
$$;

-- Groups, not users, and no attribute that bypasses grants; no inherited membership either
-- (pg_read_all_data would let the reader read every table).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles
             WHERE rolname IN ('vigil_pipeline', 'vigil_bi_reader')
               AND (rolcanlogin OR rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls)
    LOOP
        RAISE NOTICE 'resetting the attributes of % (NOLOGIN group, no bypass)', r.rolname;
        EXECUTE format('ALTER ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
                       r.rolname);
    END LOOP;
    FOR r IN SELECT g.rolname AS granted, m.rolname AS member
             FROM pg_auth_members a
             JOIN pg_roles g ON g.oid = a.roleid
             JOIN pg_roles m ON m.oid = a.member
             WHERE m.rolname IN ('vigil_pipeline', 'vigil_bi_reader')
    LOOP
        RAISE NOTICE 'revoking % from %', r.granted, r.member;
        EXECUTE format('REVOKE %I FROM %I', r.granted, r.member);
    END LOOP;
END
$$;

-- This database: both may connect; the pipeline may create temporary tables (long key lists are
-- bulk-loaded into one to delete by, see Warehouse.delete_in). Neither may create schemas, and the
-- reader may create nothing at all, not even a temporary function: TEMPORARY is revoked from
-- PUBLIC (which every role inherits, and which PostgreSQL grants it by default) and granted by
-- name to the roles that need it. With no schema to create in, a reader cannot write the cheap
-- "leaky" function that would print rows a view filters out (the views are security barriers too).
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO vigil_pipeline', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO vigil_bi_reader', current_database());
    EXECUTE format('REVOKE CREATE ON DATABASE %I FROM vigil_pipeline, vigil_bi_reader', current_database());
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, vigil_bi_reader', current_database());
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public') THEN
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    END IF;
END
$$;

-- Start from nothing: no PUBLIC access to Vigil's schemas, and no earlier grant to either role.
REVOKE ALL ON SCHEMA mimiciv_hosp, mimiciv_icu, mimiciv_note, mimiciv_ecg, mimiciv_cxr,
                     vigil_features, vigil_models, vigil_risk, vigil_audit
    FROM PUBLIC, vigil_pipeline, vigil_bi_reader;
REVOKE ALL ON ALL TABLES IN SCHEMA mimiciv_hosp, mimiciv_icu, mimiciv_note, mimiciv_ecg, mimiciv_cxr,
                                   vigil_features, vigil_models, vigil_risk, vigil_audit
    FROM PUBLIC, vigil_pipeline, vigil_bi_reader;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA mimiciv_hosp, mimiciv_icu, mimiciv_note, mimiciv_ecg, mimiciv_cxr,
                                      vigil_features, vigil_models, vigil_risk, vigil_audit
    FROM PUBLIC, vigil_pipeline, vigil_bi_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA mimiciv_hosp, mimiciv_icu, mimiciv_note, mimiciv_ecg, mimiciv_cxr,
                                   vigil_features, vigil_models, vigil_risk, vigil_audit
    REVOKE ALL ON TABLES FROM vigil_pipeline, vigil_bi_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA mimiciv_hosp, mimiciv_icu, mimiciv_note, mimiciv_ecg, mimiciv_cxr,
                                   vigil_features, vigil_models, vigil_risk, vigil_audit
    REVOKE ALL ON SEQUENCES FROM vigil_pipeline, vigil_bi_reader;

-- vigil_pipeline: read the sources; read and write the rows of Vigil's tables.
GRANT USAGE ON SCHEMA mimiciv_hosp, mimiciv_icu, mimiciv_note, mimiciv_ecg, mimiciv_cxr,
                      vigil_features, vigil_models, vigil_risk, vigil_audit
    TO vigil_pipeline;
GRANT SELECT ON ALL TABLES IN SCHEMA mimiciv_hosp, mimiciv_icu, mimiciv_note, mimiciv_ecg, mimiciv_cxr
    TO vigil_pipeline;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA vigil_features, vigil_models, vigil_risk, vigil_audit
    TO vigil_pipeline;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA vigil_features, vigil_models, vigil_risk, vigil_audit
    TO vigil_pipeline;
ALTER DEFAULT PRIVILEGES IN SCHEMA mimiciv_hosp, mimiciv_icu, mimiciv_note, mimiciv_ecg, mimiciv_cxr
    GRANT SELECT ON TABLES TO vigil_pipeline;
ALTER DEFAULT PRIVILEGES IN SCHEMA vigil_features, vigil_models, vigil_risk, vigil_audit
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO vigil_pipeline;
ALTER DEFAULT PRIVILEGES IN SCHEMA vigil_features, vigil_models, vigil_risk, vigil_audit
    GRANT USAGE, SELECT ON SEQUENCES TO vigil_pipeline;

-- vigil_bi_reader: the views in vigil_risk, one by one (no default privilege: in PostgreSQL a
-- default on TABLES would also cover every base table created in vigil_risk later).
GRANT USAGE ON SCHEMA vigil_risk TO vigil_bi_reader;
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'vigil_risk' AND c.relkind IN ('v', 'm')
             ORDER BY c.relname
    LOOP
        EXECUTE format('GRANT SELECT ON vigil_risk.%I TO vigil_bi_reader', v.relname);
    END LOOP;
END
$$;
