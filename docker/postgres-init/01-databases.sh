#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is first initialised (/docker-entrypoint-initdb.d):
#
#   airflow   Airflow's metadata database (and the Celery result backend), owned by `airflow`
#   vigil     the warehouse, owned by `vigil_owner`, who runs `vigil init --roles` (airflow-init)
#   metabase  Metabase's application database (the `bi` profile), owned by `metabase`
#
# and the warehouse's login users: `vigil_nightly` (the Airflow workers) in the group
# `vigil_pipeline`, `vigil_bi` (the BI tool's data source) in `vigil_bi_reader`. The two groups
# are those of sql/roles/roles.sql; they are created here so the users can join them, and
# `vigil init --roles` grants them their privileges. No database is open to PUBLIC.
# Passwords come from the environment (.env) as psql variables, never spliced into the SQL text.
set -euo pipefail

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname postgres \
  -v airflow_password="${AIRFLOW_DB_PASSWORD}" \
  -v owner_password="${WAREHOUSE_OWNER_DB_PASSWORD}" \
  -v pipeline_password="${WAREHOUSE_PIPELINE_DB_PASSWORD}" \
  -v bi_password="${WAREHOUSE_BI_DB_PASSWORD}" \
  -v metabase_password="${METABASE_DB_PASSWORD}" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;

CREATE ROLE vigil_owner LOGIN PASSWORD :'owner_password';
CREATE DATABASE vigil OWNER vigil_owner;
REVOKE ALL ON DATABASE vigil FROM PUBLIC;
CREATE ROLE vigil_pipeline NOLOGIN;
CREATE ROLE vigil_bi_reader NOLOGIN;
CREATE ROLE vigil_nightly LOGIN PASSWORD :'pipeline_password' IN ROLE vigil_pipeline;
CREATE ROLE vigil_bi LOGIN PASSWORD :'bi_password' IN ROLE vigil_bi_reader;

CREATE ROLE metabase LOGIN PASSWORD :'metabase_password';
CREATE DATABASE metabase OWNER metabase;
REVOKE ALL ON DATABASE metabase FROM PUBLIC;
SQL
