"""Shared fixtures: an embedded (SQLite) home per test, a real PostgreSQL database per session,
the real public data in ../shared/data, and trained homes for the end-to-end and DAG tests.

Outside CI a missing PostgreSQL server or ../shared folder skips the tests that need them,
saying why; with VIGIL_CI=1 (set by .ci/run) the same condition fails the run instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import date, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("VIGIL_CI") == "1"
PG_ADMIN_URL = os.environ.get("VIGIL_TEST_PG_ADMIN", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")

# Small synthetic cohort used by the end-to-end and DAG tests: nights are its last two days.
E2E_STAYS, E2E_START, E2E_DAYS = 320, date(2026, 1, 1), 30
E2E_NIGHTS = (date(2026, 1, 29), date(2026, 1, 30))


def pytest_configure(config):
    home = Path(tempfile.mkdtemp(prefix="vigil-airflow-"))
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


# The longest test files, longest first: handed to the xdist workers before the rest
# (scripts/test.sh runs files whole, one per worker), so no long file starts last and runs alone.
LONGEST_FIRST = ("test_research_models.py", "test_topology.py", "test_readme.py", "test_end_to_end.py",
                 "test_ui_plugin.py", "test_dags.py", "test_idempotency.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: order within a file kept


def airflow_dags_test(settings, dag_id: str, day, conf: dict | None = None,
                      timeout: int = 900) -> subprocess.CompletedProcess:
    """``airflow dags test`` in a subprocess, with its own metadata DB in the Vigil home."""
    from pipeline.cli import airflow_env

    env = airflow_env(settings)
    env["VIGIL_DEVICE"] = settings.device
    env["AIRFLOW_HOME"] = str(settings.home / "airflow")
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{settings.home / 'airflow' / 'airflow.db'}"
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    for pool in ("gpu", "training"):
        subprocess.run([airflow, "pools", "set", pool, "1", pool], env=env, check=True, capture_output=True,
                       timeout=300)
    extra = ["--conf", json.dumps(conf)] if conf else []
    return subprocess.run([airflow, "dags", "test", dag_id, day.isoformat(), *extra], env=env,
                          capture_output=True, text=True, timeout=timeout)


def unavailable(reason: str):
    """Skip locally; fail in CI, where every test must run."""
    if IN_CI:
        pytest.fail(f"{reason} (VIGIL_CI=1: this may not be skipped)")
    pytest.skip(reason)


def make_env(home: Path, warehouse_url: str | None = None) -> dict[str, str]:
    env = {"VIGIL_HOME": str(home), "VIGIL_DEVICE": "cpu"}
    if warehouse_url:
        env["VIGIL_WAREHOUSE_URL"] = warehouse_url
    return env


@pytest.fixture
def settings(tmp_path, monkeypatch):
    from pipeline.config import load_settings

    for key, value in make_env(tmp_path / "home").items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("VIGIL_WAREHOUSE_URL", raising=False)
    return load_settings()


@pytest.fixture
def warehouse(settings):
    from pipeline.store.warehouse import connect

    wh = connect(settings)
    wh.create_schema()
    yield wh
    wh.dispose()


@pytest.fixture(scope="session")
def postgres_server():
    """Admin URL of the local PostgreSQL server (skip / fail when it is down)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any failure to connect means "no server"
        unavailable(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {type(error).__name__}")
    return engine


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database for one test, dropped afterwards."""
    from sqlalchemy import text

    name = f"vigil_test_{uuid.uuid4().hex[:10]}"
    with postgres_server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with postgres_server.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=["sqlite", "postgres"])
def any_warehouse(request, tmp_path):
    """The same test against the embedded SQLite default and a real PostgreSQL database."""
    from pipeline.store.warehouse import Warehouse

    url = (f"sqlite:///{tmp_path / 'wh' / 'vigil.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    wh = Warehouse(url, ROOT / "sql")
    wh.create_schema()
    yield wh
    wh.dispose()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        unavailable(f"the real public data folder {SHARED_DATA} is absent (it sits beside the clone)")
    return SHARED_DATA


def build_trained_home(home: Path, warehouse_url: str | None) -> dict:
    """Synthesise the small cohort into ``home``, train on the first night's date, run both nights."""
    from pipeline.config import load_settings
    from pipeline.modeling.spec import load_spec
    from pipeline.modeling.train import train_spec
    from pipeline.nightly import run_night
    from pipeline.synthetic import cohort as synthetic
    from pipeline.store.warehouse import connect

    env = make_env(home, warehouse_url)
    settings = load_settings({**os.environ, **env})
    wh = connect(settings)
    wh.create_schema()
    cohort = synthetic.generate(E2E_STAYS, datetime.combine(E2E_START, datetime.min.time()), E2E_DAYS, seed=11)
    synthetic.write(wh, cohort, settings.filestore, progress=False)
    report = train_spec(wh, settings, load_spec(settings.models_dir / "icu_mortality.yaml"),
                        datetime.combine(E2E_NIGHTS[0], datetime.min.time()), progress=False, promote=True)
    runs = {night: run_night(night, settings) for night in E2E_NIGHTS}
    return {"env": env, "settings": settings, "warehouse": wh, "report": report, "runs": runs}


@pytest.fixture(scope="session")
def trained_sqlite(tmp_path_factory):
    return build_trained_home(tmp_path_factory.mktemp("e2e-sqlite"), None)


@pytest.fixture(scope="session")
def trained_postgres(tmp_path_factory, postgres_server):
    from sqlalchemy import text

    name = f"vigil_e2e_{uuid.uuid4().hex[:10]}"
    with postgres_server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    home = build_trained_home(tmp_path_factory.mktemp("e2e-postgres"), PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    yield home
    home["warehouse"].dispose()
    with postgres_server.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=["sqlite", "postgres"])
def trained(request):
    return request.getfixturevalue("trained_sqlite" if request.param == "sqlite" else "trained_postgres")


def clone_home(trained: dict, target: Path, postgres_server=None) -> dict:
    """A copy of a trained home (files, runs and warehouse) that a test may damage freely.

    SQLite warehouses are copied as files; a PostgreSQL warehouse is cloned server-side with
    ``CREATE DATABASE ... TEMPLATE`` (the original's connections are closed first).
    """
    import dataclasses
    import shutil

    from sqlalchemy import text

    from pipeline.store.warehouse import connect

    settings = trained["settings"]
    trained["warehouse"].dispose()
    shutil.copytree(settings.home, target, ignore=shutil.ignore_patterns("airflow"))
    if settings.is_sqlite:
        url = f"sqlite:///{target / 'warehouse' / 'vigil.db'}"
    else:
        name = f"vigil_clone_{uuid.uuid4().hex[:10]}"
        source = settings.warehouse_url.rsplit("/", 1)[1]
        with postgres_server.connect() as conn:  # a template may have no other sessions
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d "
                              "AND pid <> pg_backend_pid()"), {"d": source})
            conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {source}"))
        url = settings.warehouse_url.rsplit("/", 1)[0] + f"/{name}"
    cloned = dataclasses.replace(settings, home=target, filestore=target / "files", warehouse_url=url)
    return {"settings": cloned, "warehouse": connect(cloned), "database": None if settings.is_sqlite else name}


def drop_clone(clone: dict, postgres_server=None) -> None:
    from sqlalchemy import text

    clone["warehouse"].dispose()
    if clone["database"]:
        with postgres_server.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {clone['database']} WITH (FORCE)"))


@pytest.fixture(params=["sqlite", "postgres"])
def cloned(request, tmp_path):
    """A throw-away copy of the trained home, on SQLite and on PostgreSQL."""
    server = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    clone = clone_home(request.getfixturevalue(f"trained_{request.param}"), tmp_path / "home", server)
    yield clone
    drop_clone(clone, server)


@pytest.fixture
def cloned_sqlite(tmp_path, trained_sqlite):
    clone = clone_home(trained_sqlite, tmp_path / "home")
    yield clone
    drop_clone(clone)


@pytest.fixture
def cloned_postgres(tmp_path, postgres_server, trained_postgres):
    clone = clone_home(trained_postgres, tmp_path / "home", postgres_server)
    yield clone
    drop_clone(clone, postgres_server)
