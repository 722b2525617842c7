"""Least-privilege roles (``sql/roles/roles.sql``, ``vigil init --roles``) on PostgreSQL.

Checked with real login users made members of the groups: the pipeline role runs a whole night
and may not change the sources or any table's definition; the BI reader reads the vigil_risk
views and is refused every table, in every source and Vigil schema.
"""

from __future__ import annotations

import dataclasses
import uuid
from contextlib import contextmanager
from datetime import date, datetime

import psycopg2.errors
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from pipeline.store.warehouse import SCHEMAS, SOURCE_SCHEMAS, VIGIL_SCHEMAS, Warehouse, read_sql_file
from tests.conftest import E2E_NIGHTS, ROOT

ROLES = ("vigil_pipeline", "vigil_bi_reader")


@contextmanager
def login_user(postgres_server, database_url: str, group: str):
    """A LOGIN user in ``group`` (trust auth: no password) and its URL for ``database_url``'s
    database; its objects and grants there, then the user, are dropped afterwards."""
    name = f"vigil_t_{uuid.uuid4().hex[:10]}"
    with postgres_server.connect() as conn:
        conn.execute(text(f"CREATE ROLE {name} LOGIN"))
        conn.execute(text(f"GRANT {group} TO {name}"))
    try:
        yield make_url(database_url).set(username=name).render_as_string(hide_password=False)
    finally:
        admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {name}"))  # also revokes whatever it was granted here
        admin.dispose()
        with postgres_server.connect() as conn:
            conn.execute(text(f"DROP ROLE {name}"))


@contextmanager
def engine_for(url: str):
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()


def refusal(engine, statement: str) -> str | None:
    """The permission error ``statement`` gets (or the error of writing a view that cannot be
    written at all), or None when it passes the privilege checks (it succeeds, or fails later,
    e.g. on a NOT NULL constraint)."""
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    except DBAPIError as error:
        if isinstance(error.orig, psycopg2.errors.InsufficientPrivilege):
            return str(error.orig).splitlines()[0]
        if isinstance(error.orig, (psycopg2.errors.ObjectNotInPrerequisiteState, psycopg2.errors.FeatureNotSupported)):
            return str(error.orig).splitlines()[0]  # a view nobody can write through (joins, computed columns)
    return None


def not_refused(engine, statements: list[str]) -> list[str]:
    return [s for s in statements if refusal(engine, s) is None]


def relations(admin, kind: str) -> list[str]:
    """Every ``BASE TABLE`` or ``VIEW`` in the source and Vigil schemas, schema-qualified."""
    with admin.connect() as conn:
        rows = conn.execute(text(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema = ANY(:schemas) AND table_type = :kind ORDER BY 1"),
            {"schemas": list(SCHEMAS), "kind": kind}).scalars().all()
    return list(rows)


def first_columns(admin) -> dict[str, str]:
    """A column of every table and view, to write ``UPDATE t SET c = c``."""
    with admin.connect() as conn:
        return dict(conn.execute(text(
            "SELECT table_schema || '.' || table_name, MIN(column_name) FROM information_schema.columns "
            "WHERE table_schema = ANY(:schemas) GROUP BY 1"), {"schemas": list(SCHEMAS)}).all())


def acl_snapshot(admin) -> list[tuple]:
    """Every grant the roles file governs, plus the roles' own attributes, as comparable text."""
    with admin.connect() as conn:
        return [tuple(row) for query in (
            "SELECT n.nspname, c.relname, c.relkind::text, COALESCE(c.relacl::text, '') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(:schemas) "
            "AND c.relkind IN ('r', 'v', 'm', 'S', 'p') ORDER BY 1, 2",
            "SELECT nspname, COALESCE(nspacl::text, '') FROM pg_namespace "
            "WHERE nspname = ANY(:schemas) OR nspname = 'public' ORDER BY 1",
            "SELECT defaclnamespace::regnamespace::text, defaclobjtype::text, defaclacl::text "
            "FROM pg_default_acl ORDER BY 1, 2",
            "SELECT datacl::text FROM pg_database WHERE datname = current_database()",
            "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname IN ('vigil_pipeline', 'vigil_bi_reader') ORDER BY 1",
        ) for row in conn.execute(text(query), {"schemas": list(SCHEMAS)})]


FACTORS = ('[{"factor": "age", "contribution": 0.2, "value": 70.0}, '
           '{"factor": "sex", "contribution": 0.1, "value": "F"}, '
           '{"factor": "lactate", "contribution": -0.05, "value": "not measured"}, '
           '{"factor": "notes", "contribution": 0.01, "value": null}]')
INSERT_RISK = ("INSERT INTO vigil_risk.risk_scores (night, stay_id, model_name, subject_id, model_version, "
               "prediction_time, probability, risk_band, operating_threshold, modalities, top_factors) "
               "VALUES (:night, 1, 'm', 10, 'v1', :t, :p, 'medium', 0.3, 'tabular', :factors)")


@pytest.fixture
def roles_db(postgres_url):
    """A fresh database with Vigil's schema, the roles applied, and one risk row to read.

    PUBLIC's default CONNECT and TEMPORARY on the database are revoked first, as a hardened
    server would have them: the roles must carry what they need themselves."""
    wh = Warehouse(postgres_url, ROOT / "sql")
    wh.create_schema()
    with wh.begin() as conn:
        conn.execute(text(f"REVOKE ALL ON DATABASE {make_url(postgres_url).database} FROM PUBLIC"))
    wh.apply_roles()
    with wh.begin() as conn:  # a numeric, a categorical, an unmeasured and an empty factor value
        conn.execute(text(INSERT_RISK), {"night": date(2026, 1, 1), "t": datetime(2026, 1, 2), "p": 0.5,
                                         "factors": FACTORS})
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    yield postgres_url, admin
    admin.dispose()
    wh.dispose()


def server_version(admin) -> int:
    with admin.connect() as conn:
        return int(conn.execute(text("SHOW server_version_num")).scalar())


def public_privileges(admin) -> dict[str, bool]:
    """What PUBLIC (so every role) holds on this database and on schema ``public``."""
    with admin.connect() as conn:
        return dict(zip(("connect", "temporary", "create_database", "create_public"), conn.execute(text(
            "SELECT has_database_privilege('public', current_database(), 'CONNECT'), "
            "has_database_privilege('public', current_database(), 'TEMPORARY'), "
            "has_database_privilege('public', current_database(), 'CREATE'), "
            "has_schema_privilege('public', 'public', 'CREATE')")).one()))


@pytest.fixture
def default_privileges_db(postgres_url, monkeypatch, tmp_path):
    """A fresh database as ``CREATE DATABASE`` leaves it, then ``vigil init --roles``, and the
    latest and an earlier night of one stay (the earlier one is what latest_risk hides).

    Unlike ``roles_db`` nothing is revoked from PUBLIC beforehand: PostgreSQL grants PUBLIC
    CONNECT and TEMPORARY on every new database (and, before 15, CREATE on schema public), so
    only Vigil's own roles file stands between the reader and a function of its own."""
    from pipeline.cli import main

    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    before = public_privileges(admin)
    assert before["connect"] and before["temporary"] and not before["create_database"], before
    assert before["create_public"] == (server_version(admin) < 150000), before  # PG 15 dropped that default
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_WAREHOUSE_URL", postgres_url)
    assert main(["init", "--roles"]) == 0
    with admin.begin() as conn:
        for night, t, p in ((date(2026, 1, 1), datetime(2026, 1, 2), 0.5),
                            (date(2025, 12, 31), datetime(2026, 1, 1), 0.987654)):
            conn.execute(text(INSERT_RISK), {"night": night, "t": t, "p": p, "factors": FACTORS})
    yield postgres_url, admin
    admin.dispose()


def test_roles_need_postgresql(warehouse):
    with pytest.raises(RuntimeError, match="roles need PostgreSQL"):
        warehouse.apply_roles()


def test_each_do_block_stays_one_statement():
    source = (ROOT / "sql" / "roles" / "roles.sql").read_text()
    statements = read_sql_file(ROOT / "sql" / "roles" / "roles.sql")
    blocks = [s for s in statements if s.startswith("DO $$")]
    assert len(blocks) == source.count("DO $$") >= 4
    assert all(s.count("$$") == 2 and s.endswith("$$") for s in blocks)
    assert all("$$" not in s for s in statements if not s.startswith("DO $$"))


def test_vigil_init_roles_is_idempotent(postgres_url, postgres_server, monkeypatch, tmp_path, capsys):
    from pipeline.cli import main

    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_WAREHOUSE_URL", postgres_url)
    assert main(["init", "--roles"]) == 0
    assert "vigil_pipeline" in capsys.readouterr().out
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        first = acl_snapshot(admin)
        assert ("vigil_bi_reader", False, False, False, False, False, False) in first
        assert ("vigil_pipeline", False, False, False, False, False, False) in first
        latest = next(acl for schema, name, _, acl in (r for r in first if len(r) == 4)
                      if (schema, name) == ("vigil_risk", "latest_risk"))
        assert "vigil_bi_reader=r/" in latest
        assert main(["init", "--roles"]) == 0  # recreates the views, then grants on them again
        Warehouse(postgres_url, ROOT / "sql").apply_roles()
        assert acl_snapshot(admin) == first
        assert main(["init"]) == 0  # plain init (also run by synth and the loaders) keeps the grants
        assert acl_snapshot(admin) == first
    finally:
        admin.dispose()


def test_bi_reader_reads_the_views_and_nothing_else(roles_db, postgres_server):
    url, admin = roles_db
    tables, views, first_column = relations(admin, "BASE TABLE"), relations(admin, "VIEW"), first_columns(admin)
    assert "vigil_risk.risk_scores" in tables and "vigil_audit.runs" in tables and len(tables) >= 25
    assert "vigil_risk.latest_risk" in views
    with login_user(postgres_server, url, "vigil_bi_reader") as user_url, engine_for(user_url) as bi:
        for view in views:
            if view.startswith("vigil_risk."):
                with bi.connect() as conn:
                    assert conn.execute(text(f"SELECT * FROM {view}")).all(), view
        readable = [t for t in tables + [v for v in views if not v.startswith("vigil_risk.")]
                    if refusal(bi, f"SELECT * FROM {t} LIMIT 1") is None]
        assert readable == []
        assert "permission denied" in refusal(bi, "SELECT * FROM vigil_risk.risk_scores")
        writes = [statement for view in views for statement in (
            f"INSERT INTO {view} SELECT * FROM {view}",
            f"UPDATE {view} SET {first_column[view]} = {first_column[view]}",
            f"DELETE FROM {view}",
        )]
        assert not_refused(bi, writes) == []
        assert not_refused(bi, [f"CREATE TABLE {s}.vigil_t_probe (x INTEGER)" for s in (*SCHEMAS, "public")]) == []
        with bi.connect() as conn:  # the reader wrote nothing
            assert conn.execute(text("SELECT COUNT(*) FROM vigil_risk.latest_risk")).scalar() == 1


def test_pipeline_role_cannot_touch_the_sources_or_any_definition(roles_db, postgres_server):
    url, admin = roles_db
    tables = relations(admin, "BASE TABLE")
    sources = [t for t in tables if t.split(".")[0] in SOURCE_SCHEMAS]
    ours = [t for t in tables if t.split(".")[0] in VIGIL_SCHEMAS]
    assert len(sources) >= 13 and len(ours) >= 12
    first_column = first_columns(admin)
    with login_user(postgres_server, url, "vigil_pipeline") as user_url, engine_for(user_url) as pipeline:
        # what a night needs: read everything, write the rows of Vigil's own tables
        assert [t for t in tables if refusal(pipeline, f"SELECT * FROM {t} LIMIT 1")] == []
        assert [t for t in ours if refusal(pipeline, f"DELETE FROM {t} WHERE false")] == []
        assert [t for t in ours if refusal(pipeline, f"UPDATE {t} SET {first_column[t]} = {first_column[t]} "
                                                     "WHERE false")] == []
        with pipeline.begin() as conn:
            conn.execute(text("INSERT INTO vigil_audit.watermarks VALUES ('probe', :n, :t)"),
                         {"n": date(2026, 1, 1), "t": datetime(2026, 1, 2)})
            conn.execute(text("DELETE FROM vigil_audit.watermarks WHERE source_table = 'probe'"))
        as_pipeline = Warehouse(user_url, ROOT / "sql")  # a long key list goes through a temporary table
        with as_pipeline.begin() as conn:
            assert as_pipeline.delete_in(conn, "vigil_audit.watermarks", "source_table",
                                         [f"probe{i}" for i in range(2000)]) == 0
        as_pipeline.dispose()
        # and nothing else
        source_writes = [statement for t in sources for statement in (
            f"INSERT INTO {t} DEFAULT VALUES",
            f"UPDATE {t} SET {first_column[t]} = {first_column[t]} WHERE false",
            f"DELETE FROM {t} WHERE false",
            f"TRUNCATE {t}",
        )]
        assert not_refused(pipeline, source_writes) == []
        ddl = [f"CREATE TABLE {s}.vigil_t_probe (x INTEGER)" for s in (*SCHEMAS, "public")]
        ddl += [f"TRUNCATE {t}" for t in ours]
        ddl += [f"ALTER TABLE {t} ADD COLUMN vigil_t_probe INTEGER" for t in tables]
        ddl += ["CREATE SCHEMA vigil_t_probe", "DROP TABLE vigil_risk.risk_scores", "DROP VIEW vigil_risk.latest_risk",
                "CREATE INDEX vigil_t_probe ON vigil_risk.risk_scores (probability)"]
        assert not_refused(pipeline, ddl) == []
    with admin.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM vigil_risk.risk_scores")).scalar() == 1


@pytest.mark.slow
def test_pipeline_role_runs_a_night_and_the_reader_sees_it(trained_postgres, postgres_server):
    from pipeline.nightly import run_night

    wh, settings, night = trained_postgres["warehouse"], trained_postgres["settings"], E2E_NIGHTS[1]
    wh.apply_roles()
    dump = ("SELECT * FROM vigil_risk.risk_scores WHERE night = :night ORDER BY stay_id, model_name")
    before = wh.read(dump, {"night": night})
    runs_before = int(wh.scalar("SELECT COUNT(*) FROM vigil_audit.runs WHERE night = :night", {"night": night}))
    assert len(before) > 0
    with login_user(postgres_server, settings.warehouse_url, "vigil_pipeline") as user_url:
        results = run_night(night, dataclasses.replace(settings, warehouse_url=user_url))
    assert results["publish"]["risk_rows"] == len(before)
    after = wh.read(dump, {"night": night})
    assert after.equals(before)  # nothing run-specific in the risk table: a re-run is identical
    assert wh.scalar("SELECT COUNT(*) FROM vigil_audit.runs WHERE night = :night", {"night": night}) == runs_before == 1
    expected = int(wh.scalar("SELECT COUNT(*) FROM vigil_risk.latest_risk"))
    with login_user(postgres_server, settings.warehouse_url, "vigil_bi_reader") as user_url, \
            engine_for(user_url) as bi:
        with bi.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM vigil_risk.latest_risk")).scalar() == expected > 0
        assert "permission denied" in refusal(bi, "SELECT * FROM vigil_risk.risk_scores")


def test_bi_reader_reads_every_view_and_column_over_categorical_and_unmeasured_factors(roles_db, postgres_server):
    url, admin = roles_db
    views = [v for v in relations(admin, "VIEW") if v.startswith("vigil_risk.")]
    assert {"vigil_risk.latest_risk", "vigil_risk.risk_factors", "vigil_risk.alerts", "vigil_risk.risk_history"} <= \
        set(views)
    with login_user(postgres_server, url, "vigil_bi_reader") as user_url, engine_for(user_url) as bi:
        with bi.connect() as conn:
            for view in views:
                columns = conn.execute(text(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema || '.' || table_name = :v"),
                    {"v": view}).scalars().all()
                for column in columns:  # each column on its own: a failing cast names its column
                    assert conn.execute(text(f"SELECT {column} FROM {view}")).all(), (view, column)
            factors = conn.execute(text("SELECT factor, value, value_numeric, contribution FROM vigil_risk.risk_factors "
                                        "ORDER BY rank")).all()
    assert [tuple(f) for f in factors] == [("age", "70.0", 70.0, 0.2), ("sex", "F", None, 0.1),
                                           ("lactate", "not measured", None, -0.05), ("notes", None, None, 0.01)]


LEAK = ("CREATE FUNCTION {schema}.vigil_t_leak(night date, probability double precision) RETURNS boolean "
        "LANGUAGE plpgsql COST 0.0000001 AS $f$ BEGIN RAISE NOTICE 'leak % %', night, probability; "
        "RETURN true; END $f$")


def leak_attack(bi, view: str, function: str, create: str | None = None) -> tuple[list, list[str]]:
    """The rows ``SELECT ... FROM view WHERE function(night, probability)`` returns and the
    notices the function printed, after running ``create`` (the reader's own function) on the
    same connection: a pg_temp function lives only in the session that made it. psycopg2's own
    cursor, as SQLAlchemy consumes the notices; a refused ``create`` raises its error."""
    raw = bi.raw_connection()
    try:
        cursor = raw.cursor()
        if create:
            cursor.execute(create)
        cursor.execute(f"SELECT night, probability FROM {view} WHERE {function}(night, probability)")
        shown = cursor.fetchall()
        printed = [n for n in raw.dbapi_connection.notices if "leak" in n]
    finally:
        raw.close()
    return shown, printed


def test_bi_reader_cannot_print_hidden_rows_through_a_cheap_function(roles_db, postgres_server):
    """The classic leak: a function cheaper than the view's own filter is evaluated first and
    prints every row it is shown. The reader may not create one (no TEMPORARY, no CREATE), and
    one made by someone who could is shown only the rows the view returns (security barrier)."""
    url, admin = roles_db
    with admin.begin() as conn:  # an earlier night of the same stay: risk_scores has it, latest_risk does not
        conn.execute(text(INSERT_RISK), {"night": date(2025, 12, 31), "t": datetime(2026, 1, 1), "p": 0.987654,
                                         "factors": FACTORS})
    with login_user(postgres_server, url, "vigil_bi_reader") as user_url, engine_for(user_url) as bi:
        for schema in ("pg_temp", "public", "vigil_risk"):
            assert "permission denied" in (refusal(bi, LEAK.format(schema=schema)) or ""), schema
        with admin.begin() as conn:
            conn.execute(text(LEAK.format(schema="public")))
            conn.execute(text("GRANT EXECUTE ON FUNCTION public.vigil_t_leak(date, double precision) "
                              "TO vigil_bi_reader"))
        try:
            for view in ("vigil_risk.latest_risk", "vigil_risk.alerts"):
                shown, printed = leak_attack(bi, view, "public.vigil_t_leak")
                assert shown and all(float(p) != 0.987654 for _, p in shown), view
                assert printed and not [n for n in printed if "0.987654" in n or "2025-12-31" in n], (view, printed)
        finally:
            with admin.begin() as conn:
                conn.execute(text("DROP FUNCTION public.vigil_t_leak(date, double precision)"))


def test_bi_reader_creates_nothing_where_the_database_keeps_postgresql_defaults(default_privileges_db,
                                                                                postgres_server):
    """``roles_db`` revokes everything from PUBLIC itself, so it cannot tell whether Vigil's roles
    file does. Here only ``vigil init --roles`` has run on a database with PostgreSQL's default
    grants: the file must take TEMPORARY back from PUBLIC (every role inherits it), or the reader
    writes a cheap function in pg_temp and calls it in a WHERE on the views."""
    url, admin = default_privileges_db
    after = public_privileges(admin)
    assert after["connect"] and not after["temporary"] and not after["create_public"], after
    with admin.connect() as conn:
        assert conn.execute(text(
            "SELECT has_database_privilege('vigil_bi_reader', current_database(), 'TEMPORARY') "
            "OR has_database_privilege('vigil_bi_reader', current_database(), 'CREATE')")).scalar() is False
    with login_user(postgres_server, url, "vigil_bi_reader") as user_url, engine_for(user_url) as bi:
        temp = refusal(bi, LEAK.format(schema="pg_temp")) or ""
        assert "permission denied to create temporary tables" in temp, temp
        schema = refusal(bi, "CREATE SCHEMA vigil_t_probe") or ""
        assert "permission denied for database" in schema, schema
        table = refusal(bi, "CREATE TABLE public.vigil_t_probe (x INTEGER)") or ""
        assert "permission denied for schema public" in table, table
        # the whole attack as the reader would try it: wherever it could make its function, the
        # security barrier still shows it only the rows the view returns
        hidden = []
        for view in ("vigil_risk.latest_risk", "vigil_risk.alerts"):
            for where in ("pg_temp", "public", "vigil_risk"):
                try:
                    shown, printed = leak_attack(bi, view, f"{where}.vigil_t_leak", LEAK.format(schema=where)
                                                 .replace("CREATE", "CREATE OR REPLACE", 1))  # pooled session
                except psycopg2.errors.InsufficientPrivilege:
                    continue
                hidden += [(view, where, n) for n in printed if "0.987654" in n or "2025-12-31" in n]
                hidden += [(view, where, row) for row in shown if float(row[1]) == 0.987654]
        assert hidden == []
        with bi.connect() as conn:
            assert conn.execute(text("SELECT probability FROM vigil_risk.latest_risk")).scalars().all() == [0.5]


def test_every_vigil_risk_view_is_a_security_barrier(postgres_url):
    """A view that is not a security barrier lets the planner run a reader's cheap function on
    rows the view filters out (earlier nights in latest_risk). Every view in vigil_risk, as the
    catalogue lists them (a view added later is covered too), after a first and a repeated
    ``vigil init`` (which drops and recreates the views)."""
    wh = Warehouse(postgres_url, ROOT / "sql")
    try:
        for _ in range(2):
            wh.create_schema()
            with wh.begin() as conn:
                options = dict(conn.execute(text(
                    "SELECT v.viewname, COALESCE(c.reloptions, '{}') FROM pg_views v "
                    "JOIN pg_namespace n ON n.nspname = v.schemaname "
                    "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = v.viewname AND c.relkind = 'v' "
                    "WHERE v.schemaname = 'vigil_risk' ORDER BY 1")).all())
            assert {"latest_risk", "risk_history", "alerts", "risk_factors"} <= set(options), options
            assert [name for name, opts in options.items() if "security_barrier=true" not in opts] == [], options
    finally:
        wh.dispose()
