"""The `vigil` command line as a user meets it: help, clear errors, and the main commands."""

import subprocess
import sys

from tests.conftest import make_env


def vigil(tmp_path, *args, env_extra=None, stdin=None):
    import os

    env = {**os.environ, **make_env(tmp_path / "home"), **(env_extra or {})}
    env.pop("VIGIL_WAREHOUSE_URL", None)
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300, input=stdin)


def test_help_lists_every_command(tmp_path):
    result = vigil(tmp_path, "--help")
    assert result.returncode == 0
    for command in ("init", "synth", "load-mimic-demo", "check-data", "train", "promote", "run", "top", "demo", "airflow"):
        assert command in result.stdout


def test_errors_are_one_clear_line_not_a_traceback(tmp_path):
    assert vigil(tmp_path, "init").returncode == 0
    untrained = vigil(tmp_path, "run", "--date", "2026-01-01")
    assert untrained.returncode == 1
    assert "no model has a promoted version" in untrained.stderr and "Traceback" not in untrained.stderr
    future = vigil(tmp_path, "run", "--date", "2999-01-01")
    assert future.returncode == 1 and "is not over until" in future.stderr
    bad_stage = vigil(tmp_path, "run", "--date", "2026-01-01", "--stages", "extract,guess")
    assert bad_stage.returncode == 2 and "unknown stage" in bad_stage.stderr
    assert vigil(tmp_path, "run", "--date", "01/02/2026").returncode == 2
    empty = vigil(tmp_path, "top")
    assert empty.returncode == 1 and "risk table is empty" in empty.stdout


def test_synth_writes_a_cohort_and_check_data_reports_quality(tmp_path):
    result = vigil(tmp_path, "-q", "synth", "--stays", "60", "--days", "10")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "synthetic cohort: 60 ICU stays" in result.stdout
    checked = vigil(tmp_path, "check-data", "--as-of", "2026-01-20")
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert "quarantine reasons:" in checked.stdout and "features: 60 stays" in checked.stdout
    assert (tmp_path / "home" / "files" / "ecg").is_dir() and (tmp_path / "home" / "files" / "cxr").is_dir()


def test_sql_queries_the_warehouse_with_its_schemas_attached(tmp_path):
    """The README's BI queries run as pasted on the embedded default (a plain sqlite3 session
    lacks the attached schemas the views live in)."""
    assert vigil(tmp_path, "init").returncode == 0
    result = vigil(tmp_path, "sql", "SELECT COUNT(*) AS stays FROM vigil_risk.latest_risk")
    assert result.returncode == 0 and result.stdout.split() == ["stays", "0"]
    piped = vigil(tmp_path, "sql", stdin="SELECT 1 AS a; SELECT 2 AS b;")
    assert piped.returncode == 0 and piped.stdout.split() == ["a", "1", "b", "2"]
    assert vigil(tmp_path, "sql", "SELECT * FROM vigil_risk.no_such_view").returncode == 1
