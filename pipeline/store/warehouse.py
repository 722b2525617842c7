"""The gateway of the store layer: engines, schema creation, typed reads and bulk writes.

The same schema-qualified SQL runs on PostgreSQL and on the embedded SQLite default: on SQLite
each schema is a database file ATTACHed under the schema's name, so ``mimiciv_hosp.patients``
means the same on both. Timestamps are stored and bound as ISO-8601 text on SQLite (which has
no timestamp type), in the one format whose string order is time order.
"""

from __future__ import annotations

import io
import math
import re
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlparse
from sqlalchemy import Connection, bindparam, create_engine, event, inspect, text
from sqlalchemy.engine import Engine

SOURCE_SCHEMAS = ("mimiciv_hosp", "mimiciv_icu", "mimiciv_note", "mimiciv_ecg", "mimiciv_cxr")
VIGIL_SCHEMAS = ("vigil_features", "vigil_models", "vigil_risk", "vigil_audit")
SCHEMAS = SOURCE_SCHEMAS + VIGIL_SCHEMAS

_TIME_TYPES = ("TIMESTAMP", "DATETIME")
WRITER_LOCK = 0x5649_4749_4C  # "VIGIL": the advisory lock key of serialise_writers
_IN_CHUNK = 900  # under SQLite's bound-parameter limit
_NAMED_PARAM = re.compile(r"(?<!:):(\w+)")
_IN_VALUES = re.compile(r"[\w.]+\s+IN\s+:values")
_SQLITE_INDEX = re.compile(
    r"CREATE (UNIQUE )?INDEX IF NOT EXISTS (\w+) ON (\w+)\.(\w+)", flags=re.IGNORECASE
)


def iso(value: datetime | date | pd.Timestamp | None) -> str | None:
    """Format a time as Vigil stores and binds it: ``YYYY-MM-DD HH:MM:SS[.ffffff]``.

    >>> iso(datetime(2026, 2, 28, 7, 5))
    '2026-02-28 07:05:00'
    >>> iso(date(2026, 2, 28))
    '2026-02-28'
    """
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(sep=" ")
    return value.isoformat()


def read_sql_file(path: Path) -> list[str]:
    """The statements of a ``.sql`` file, comments stripped."""
    source = sqlparse.format(path.read_text(), strip_comments=True)
    return [s.strip().rstrip(";") for s in sqlparse.split(source) if s.strip().rstrip(";")]


class Warehouse:
    """An SQLAlchemy engine plus Vigil's conventions for reading and writing frames."""

    def __init__(self, url: str, sql_dir: Path):
        self.url = url
        self.sql_dir = sql_dir
        self.engine: Engine = self._make_engine(url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def _make_engine(self, url: str) -> Engine:
        if not url.startswith("sqlite"):
            return create_engine(url, pool_pre_ping=True)
        db_path = Path(url.split("///", 1)[1])
        db_path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 120})

        @event.listens_for(engine, "connect")
        def _attach_schemas(dbapi_conn, _record):  # one file per schema, beside the main one
            dbapi_conn.text_factory = _text_or_bytes
            cursor = dbapi_conn.cursor()
            for schema in SCHEMAS:
                cursor.execute(f"ATTACH DATABASE ? AS {schema}", (str(db_path.parent / f"{schema}.db"),))
            try:  # an SQLite built without its math functions: floor() for the extraction queries
                cursor.execute("SELECT floor(1.5)")
            except sqlite3.OperationalError:
                dbapi_conn.create_function("floor", 1, lambda x: None if x is None else float(math.floor(x)),
                                           deterministic=True)
            cursor.close()

        return engine

    def dispose(self) -> None:
        if getattr(self, "_adbc_connection", None) is not None:
            self._adbc_connection.close()
            self._adbc_connection = None
        self.engine.dispose()

    # ---------------------------------------------------------------- schema

    def create_schema(self) -> None:
        """Create every schema, table, view and the concept map (idempotent).

        Recreating the views drops the grants on them; where this database already has Vigil's
        roles (``vigil init --roles``), they are granted again, so the BI reader keeps its views.
        """
        had_roles = not self.is_sqlite and bool(self.scalar(
            "SELECT COUNT(*) FROM pg_roles r JOIN pg_namespace n ON n.nspname = 'vigil_risk' "
            "WHERE r.rolname = 'vigil_bi_reader' AND has_schema_privilege(r.oid, n.oid, 'USAGE')"))
        with self.begin() as conn:
            if not self.is_sqlite:
                for schema in SCHEMAS:
                    conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
            self._run_sql_folders(conn, ("schema",))
        self._add_missing_columns()  # before the views, which may read the added columns
        with self.begin() as conn:
            self._run_sql_folders(conn, ("migrations", "concepts", f"functions/{self.dialect}", "views",
                                         f"views/{self.dialect}"))
        self.__dict__.pop("_time_columns", None)
        if had_roles:
            self.apply_roles()

    def _run_sql_folders(self, conn: Connection, folders: tuple[str, ...]) -> None:
        """Every statement of ``sql/<folder>/*.sql``, folder by folder, files in name order
        (``views/<dialect>/`` holds what only one dialect can say, e.g. reading JSON)."""
        for folder in folders:
            for path in sorted((self.sql_dir / folder).glob("*.sql")):
                for statement in read_sql_file(path):
                    conn.execute(text(self._dialect_sql(statement)))

    # Columns added to existing tables after their first release: (table, column, definition).
    ADDED_COLUMNS = (("vigil_audit.runs", "stays_unscored", "INTEGER NOT NULL DEFAULT 0"),
                     ("vigil_risk.risk_scores", "operating_threshold", "DOUBLE PRECISION"),
                     ("vigil_risk.risk_scores", "outputs", "TEXT"),
                     ("vigil_risk.risk_scores", "modality_contributions", "TEXT"),
                     ("vigil_models.model_versions", "data_snapshot", "TEXT"),
                     ("vigil_models.model_versions", "code_version", "VARCHAR(64)"),
                     ("vigil_models.model_versions", "selected", "BOOLEAN"),
                     ("vigil_models.model_versions", "promoted_at", "TIMESTAMP"),
                     ("vigil_features.outcome_events", "value", "DOUBLE PRECISION"),
                     ("vigil_features.concept_map", "lower_exclusive", "BOOLEAN"),
                     ("vigil_audit.runs", "content_sha256", "VARCHAR(64)"))

    def _add_missing_columns(self) -> None:
        """Bring a warehouse created by an earlier version up to date (``CREATE TABLE IF NOT
        EXISTS`` leaves an existing table as it was)."""
        inspector = inspect(self.engine)
        with self.begin() as conn:
            for qualified, column, definition in self.ADDED_COLUMNS:
                schema, table = qualified.split(".")
                if column not in {c["name"] for c in inspector.get_columns(table, schema=schema)}:
                    conn.execute(text(f"ALTER TABLE {qualified} ADD COLUMN {column} {definition}"))

    def apply_roles(self) -> None:
        """Create the least-privilege group roles and grant them in this database (``sql/roles``).

        PostgreSQL only. Run it as the owner of Vigil's schemas, after :meth:`create_schema`
        (which calls it again from then on, as recreating the views drops their grants); idempotent.
        """
        if self.is_sqlite:
            raise RuntimeError("roles need PostgreSQL: the embedded SQLite warehouse has no users or "
                               "grants (point VIGIL_WAREHOUSE_URL at a PostgreSQL database)")
        with self.begin() as conn:
            for path in sorted((self.sql_dir / "roles").glob("*.sql")):
                for statement in read_sql_file(path):
                    conn.execute(text(statement))

    def _dialect_sql(self, statement: str) -> str:
        if self.is_sqlite:  # SQLite names the index's schema, not the table's
            return _SQLITE_INDEX.sub(r"CREATE \1INDEX IF NOT EXISTS \3.\2 ON \4", statement)
        return statement

    @cached_property
    def _time_columns(self) -> dict[str, set[str]]:
        """``{"schema.table": {timestamp columns}}`` from the live catalogue."""
        inspector = inspect(self.engine)
        found: dict[str, set[str]] = {}
        for schema in SCHEMAS:
            for table in inspector.get_table_names(schema=schema):
                found[f"{schema}.{table}"] = {
                    c["name"]
                    for c in inspector.get_columns(table, schema=schema)
                    if str(c["type"]).upper().startswith(_TIME_TYPES)
                }
        return found

    def table_exists(self, qualified: str) -> bool:
        schema, table = qualified.split(".")
        return inspect(self.engine).has_table(table, schema=schema)

    # ---------------------------------------------------------------- reads

    def sql(self, name: str) -> str:
        """The query in ``sql/<name>.sql`` (e.g. ``extract/labevents``), comments stripped so a
        ``:name`` in a comment is not taken for a bind parameter."""
        return sqlparse.format((self.sql_dir / f"{name}.sql").read_text(), strip_comments=True).strip().rstrip(";")

    def query(self, name: str) -> str:
        """One of the store's named queries, ``sql/queries/<name>.sql`` (e.g. ``runs/latest``)."""
        return self.sql(f"queries/{name}")

    def read(
        self,
        query: str,
        params: Mapping[str, Any] | None = None,
        *,
        times: tuple[str, ...] = (),
        conn: Connection | None = None,
    ) -> pd.DataFrame:
        """Run a query and return a frame; ``times`` are parsed to ``datetime64[us]``."""
        bound = {k: _bind(v) for k, v in (params or {}).items()}
        if conn is None:
            with self.engine.connect() as own:
                frame = pd.read_sql_query(text(query), own, params=bound)
        else:
            frame = pd.read_sql_query(text(query), conn, params=bound)
        for column in times:
            frame[column] = to_time(frame[column])
        return frame

    def read_in(self, query: str, values, params: Mapping[str, Any] | None = None, *,
                times: tuple[str, ...] = ()) -> pd.DataFrame:
        """Run ``query`` (which contains ``IN :values``) once per chunk of ``values``; one frame."""
        statement = text(query).bindparams(bindparam("values", expanding=True))
        values = [_bind(v) for v in dict.fromkeys(values)]
        bound = {k: _bind(v) for k, v in (params or {}).items()}
        parts = []
        with self.engine.connect() as conn:
            for start in range(0, max(len(values), 1), _IN_CHUNK):
                chunk = values[start:start + _IN_CHUNK] or [None]
                parts.append(pd.read_sql_query(statement, conn, params={**bound, "values": chunk}))
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        for column in times:
            frame[column] = to_time(frame[column])
        return frame

    def read_arrow(self, query: str, params: Mapping[str, Any] | None = None, values=None) -> pa.Table:
        """A query's rows as an Arrow table; ``IN :values`` binds ``values`` (a list).

        On PostgreSQL this goes through ADBC (columnar, no Python objects per row) with the
        parameters bound server-side; on SQLite through the SQLAlchemy connection.
        """
        if self.is_sqlite:
            frame = self.read_in(query, values, params) if values is not None else self.read(query, params)
            return pa.Table.from_pandas(frame, preserve_index=False)
        if values is not None and not len(values):  # an empty array binds as text[]: match nothing, keep the columns
            query, values = _IN_VALUES.sub("FALSE", query), None
        statement, arguments = _adbc_statement(query, params, values)
        for attempt in (1, 2):  # a read is safe to repeat: once more on a fresh connection if the server dropped it
            cursor = self._adbc().cursor()
            try:
                cursor.execute(statement, arguments)
                return cursor.fetch_arrow_table()
            except Exception:
                if attempt == 2 or self._adbc_alive():
                    raise
                self._adbc_connection = None
            finally:
                cursor.close()
        raise AssertionError("unreachable")

    @contextmanager
    def stream_arrow(self, query: str, params: Mapping[str, Any] | None = None) -> Iterator[pa.RecordBatchReader]:
        """A query's rows as Arrow record batches while they arrive (PostgreSQL only): memory
        holds one batch (about 16 MB), whatever the number of rows."""
        if self.is_sqlite:
            raise NotImplementedError("SQLite columns hold any type a feed wrote: read them with read(), by shard")
        statement, arguments = _adbc_statement(query, params)
        if arguments is not None:
            raise ValueError("a streamed query's parameters must be numbers or times (written into the query)")
        if not self._adbc_alive():
            self._adbc_connection = None
        cursor = self._adbc().cursor()
        try:
            cursor.execute(statement)
            yield cursor.fetch_record_batch()
        finally:
            cursor.close()

    def read_columnar(self, query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """A query's rows as a frame built column by column, for reads of many rows.

        On PostgreSQL the rows arrive as Arrow (ADBC, the server's binary COPY format): no
        Python object per value, text stays Arrow-backed ``string`` and integers with gaps stay
        ``Int64``. On SQLite, whose columns hold whatever a feed wrote, this is :meth:`read`, so
        every raw value reaches the screening that quarantines the unreadable ones.
        """
        if self.is_sqlite:
            return self.read(query, params)
        return arrow_frame(self.read_arrow(query, params))

    def _adbc_alive(self) -> bool:
        try:
            cursor = self._adbc_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            cursor.close()
            return True
        except Exception:  # noqa: BLE001 - any failure means the connection is gone
            return False

    def _adbc(self):
        if getattr(self, "_adbc_connection", None) is None:
            import adbc_driver_postgresql.dbapi as adbc

            url = self.engine.url.set(drivername="postgresql")
            self._adbc_connection = adbc.connect(url.render_as_string(hide_password=False), autocommit=True)
        return self._adbc_connection

    def read_table(self, qualified: str, where: str = "", params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        query = f"SELECT * FROM {qualified}" + (f" WHERE {where}" if where else "")
        return self.read(query, params, times=tuple(self._time_columns.get(qualified, ())))

    def read_column(self, qualified: str, column: str, conn: Connection | None = None) -> pd.Series:
        """Every value of one column of a table."""
        return self.read(f"SELECT {column} FROM {qualified}", conn=conn)[column]

    def scalar(self, query: str, params: Mapping[str, Any] | None = None) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(query), {k: _bind(v) for k, v in (params or {}).items()}).scalar()

    # ---------------------------------------------------------------- writes

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: everything inside commits together or not at all."""
        with self.engine.begin() as conn:
            yield conn

    def serialise_writers(self, conn: Connection) -> None:
        """Serialise the writers of shared rows (held until commit or rollback).

        Two nights publishing at once both move rows of the shared event and record stores, and
        two embedding stages may cache the same content; on PostgreSQL they would deadlock or
        collide on a key. A transaction-scoped advisory lock makes the second wait instead. On
        SQLite, whose driver opens a transaction only at the first write, the transaction is begun
        IMMEDIATE (a write lock on every attached schema): a publish's check of what is already
        published and its writes then happen with no other writer in between.
        """
        if not self.is_sqlite:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITER_LOCK})
        elif not conn.connection.dbapi_connection.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            raise RuntimeError("serialise_writers must come first in its transaction (SQLite cannot lock later)")

    def execute(self, conn: Connection, query: str, params: Mapping[str, Any] | None = None) -> int:
        result = conn.execute(text(query), {k: _bind(v) for k, v in (params or {}).items()})
        return result.rowcount

    def bulk_insert(self, conn: Connection, qualified: str, frame: pd.DataFrame) -> int:
        """Append ``frame`` to a table inside the caller's transaction.

        PostgreSQL gets ``COPY ... FROM STDIN`` (CSV written by Arrow); SQLite, which is
        in-process, gets one ``executemany``. Columns absent from the frame take their defaults.
        """
        if frame.empty:
            return 0
        columns = list(frame.columns)
        if self.is_sqlite:
            records = _sqlite_records(frame)
            placeholders = ", ".join("?" for _ in columns)
            conn.exec_driver_sql(
                f"INSERT INTO {qualified} ({', '.join(columns)}) VALUES ({placeholders})", records
            )
        else:
            buffer = io.BytesIO()
            pa_csv.write_csv(
                _arrow_for_copy(frame),
                buffer,
                pa_csv.WriteOptions(include_header=False, quoting_style="needed"),
            )
            buffer.seek(0)
            cursor = conn.connection.dbapi_connection.cursor()
            cursor.copy_expert(
                f"COPY {qualified} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buffer
            )
            cursor.close()
        return len(frame)

    def delete_in(self, conn: Connection, qualified: str, column: str, values, where: str = "",
                  params: Mapping[str, Any] | None = None) -> int:
        """``DELETE ... WHERE column IN (values) [AND where]``, values always bound, never pasted.

        Short lists are bound inline; long ones are bulk-loaded into a temporary table first,
        so deleting a million keys is one statement, not a thousand.
        """
        values = list(dict.fromkeys(values))
        bound = {k: _bind(v) for k, v in (params or {}).items()}
        extra = f" AND {where}" if where else ""
        if len(values) <= _IN_CHUNK:
            if not values:
                return 0
            query = text(f"DELETE FROM {qualified} WHERE {column} IN :values{extra}").bindparams(
                bindparam("values", expanding=True))
            return conn.execute(query, {**bound, "values": [_bind(v) for v in values]}).rowcount
        conn.execute(text("DROP TABLE IF EXISTS vigil_delete_keys"))
        conn.execute(text("CREATE TEMPORARY TABLE vigil_delete_keys (v TEXT)"))
        self.bulk_insert(conn, "vigil_delete_keys", pd.DataFrame({"v": [str(v) for v in values]}))
        cast = "" if self.is_sqlite else "::text"
        deleted = conn.execute(text(f"DELETE FROM {qualified} WHERE {column}{cast} IN "
                                    f"(SELECT v FROM vigil_delete_keys){extra}"), bound).rowcount
        conn.execute(text("DROP TABLE vigil_delete_keys"))
        return deleted

    def replace_rows(
        self, conn: Connection, qualified: str, where: str, params: Mapping[str, Any], frame: pd.DataFrame
    ) -> int:
        """Delete the key range ``where`` selects, then bulk-insert ``frame`` (one transaction)."""
        self.execute(conn, f"DELETE FROM {qualified} WHERE {where}", params)
        return self.bulk_insert(conn, qualified, frame)

    def replace_night(self, conn: Connection, qualified: str, night: date, frame: pd.DataFrame) -> int:
        """Replace a night's rows of a table (keyed by its ``night`` column) with ``frame``."""
        return self.replace_rows(conn, qualified, "night = :night", {"night": night}, frame)

    def delete_night(self, conn: Connection, qualified: str, night: date, column: str = "night") -> int:
        """Delete the rows of a table whose ``column`` is ``night``."""
        return self.execute(conn, f"DELETE FROM {qualified} WHERE {column} = :night", {"night": night})

    def rename_table(self, conn: Connection, qualified: str, table: str) -> None:
        """Rename a table within its schema to ``table`` (fault drills take the audit table away and back)."""
        self.execute(conn, f"ALTER TABLE {qualified} RENAME TO {table}")


def _text_or_bytes(value: bytes) -> str | bytes:
    """SQLite text as ``str``; text that is not UTF-8 (SQLite stores whatever a feed wrote) stays
    ``bytes``, so one bad row is screened out at extraction instead of failing the whole read."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(value)


_ARROW_TO_PANDAS = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow"),
                    pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int64Dtype(), pa.int16(): pd.Int64Dtype()}


def _bind(value: Any) -> Any:
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return iso(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def arrow_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow table of warehouse rows as a frame: text stays Arrow-backed, integers ``Int64``."""
    return table.to_pandas(types_mapper=_ARROW_TO_PANDAS.get, self_destruct=True)


def _adbc_statement(query: str, params: Mapping[str, Any] | None, values=None) -> tuple[str, tuple | None]:
    """The query as ADBC runs it: numbers and times written in (no arguments), else ``$n``
    placeholders and their arguments (``IN :values`` as ``= ANY($n)``)."""
    bound = {**(params or {}), **({"values": list(dict.fromkeys(values))} if values is not None else {})}
    literals = {name: _sql_literal(value) for name, value in bound.items()}
    if None not in literals.values():   # the server's COPY stream: about twice a bound query's rate
        return _NAMED_PARAM.sub(lambda match: literals[match.group(1)], query), None
    names: list[str] = []

    def positional(match: re.Match) -> str:
        names.append(match.group(1))
        return f"${len(names)}"

    statement = _NAMED_PARAM.sub(positional, query.replace("IN :values", "= ANY(:values)"))
    return statement, tuple(_adbc_value(bound[n]) for n in names)


def _sql_literal(value: Any) -> str | None:
    """A number or naive time written as a PostgreSQL literal; None for anything else (bound).

    ADBC reads a query without bound parameters through ``COPY (query) TO STDOUT`` in binary,
    streamed; with parameters it falls back to a prepared statement whose whole result libpq
    holds at once, at about half the rate. Only values whose text cannot carry SQL are inlined.

    >>> _sql_literal(datetime(2026, 1, 2, 3, 4, 5, 6)), _sql_literal(-7), _sql_literal("x")
    ("TIMESTAMP '2026-01-02 03:04:05.000006'", '(-7)', None)
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):   # int's own repr, in parentheses: no subclass's text, no "--" after a minus
        return f"({int.__repr__(value)})"
    if isinstance(value, float) and math.isfinite(value):
        return f"CAST({float.__repr__(value)} AS double precision)"
    if isinstance(value, (datetime, pd.Timestamp)) and value.tzinfo is None and not pd.isna(value):
        return f"TIMESTAMP '{pd.Timestamp(value).isoformat(sep=' ', timespec='microseconds')}'"
    if isinstance(value, date) and not isinstance(value, datetime):
        return f"DATE '{value.isoformat()}'"
    return None


def _adbc_value(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_adbc_value(v) for v in value]
    return value


def to_time(series: pd.Series) -> pd.Series:
    """Parse stored times (ISO text on SQLite, timestamps on PostgreSQL) to naive UTC."""
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = series
    else:
        parsed = pd.to_datetime(series, format="ISO8601", errors="coerce")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[us]")


def _sqlite_records(frame: pd.DataFrame) -> list[tuple]:
    columns = []
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_datetime64_any_dtype(col):
            values = [iso(v) for v in col]
        elif pd.api.types.is_bool_dtype(col):
            values = [None if pd.isna(v) else int(v) for v in col]
        else:
            values = col.astype(object).where(col.notna(), None).tolist()
            values = [v.item() if isinstance(v, np.generic) else _bind(v) for v in values]
        columns.append(values)
    return list(zip(*columns))


def _arrow_for_copy(frame: pd.DataFrame) -> pa.Table:
    """Arrow table whose CSV PostgreSQL's COPY reads back exactly (bytes as bytea hex)."""
    arrays = {}
    for name in frame.columns:
        col = frame[name]
        if col.dtype == object and col.map(lambda v: isinstance(v, (bytes, bytearray))).any():
            arrays[name] = pa.array([None if v is None else "\\x" + bytes(v).hex() for v in col], pa.string())
        else:
            arrays[name] = pa.array(col, from_pandas=True)
    return pa.table(arrays)


def ensure_database(admin_url: str, database: str) -> str:
    """Create the PostgreSQL database ``database`` (a plain identifier) if missing; its URL."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", database):
        raise ValueError(f"metadata database name must be a lower-case identifier, not {database!r}")
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": database}).scalar():
            conn.execute(text(f"CREATE DATABASE {database}"))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{database}"


def connect(settings) -> Warehouse:
    """The warehouse named by the settings."""
    return Warehouse(settings.warehouse_url, settings.sql_dir)
