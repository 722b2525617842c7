-- SQLite's time functions, for PostgreSQL: extraction queries that do time arithmetic
-- (sql/extract/cohort_sepsis3.sql) are written once, in seconds of the Julian day count, and run
-- on both warehouses. Only the forms those queries use: julianday(timestamp) and
-- datetime(julian day number), to the second. In schema public, which every role's search path
-- holds (PostgreSQL grants EXECUTE on functions to PUBLIC); `vigil init` needs CREATE on public.
CREATE OR REPLACE FUNCTION public.julianday(t TIMESTAMP) RETURNS DOUBLE PRECISION
    LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT EXTRACT(EPOCH FROM t)::DOUBLE PRECISION / 86400.0 + 2440587.5 $$;

CREATE OR REPLACE FUNCTION public.datetime(julian_day DOUBLE PRECISION) RETURNS TIMESTAMP
    LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT to_timestamp(ROUND((julian_day - 2440587.5) * 86400.0)) AT TIME ZONE 'UTC' $$;
