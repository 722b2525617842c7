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


def test_init_makes_the_registrys_paths_inside_the_home_relative(settings, warehouse, capsys):
    """A home trained before paths were recorded relative to it: `vigil init` rewrites those
    inside the home, once; others (elsewhere, or a sibling folder sharing its prefix) stay."""
    import argparse
    from datetime import datetime

    from pipeline.cli import cmd_init
    from pipeline.modeling import registry

    home, elsewhere = settings.home, f"{settings.home}-before/artifacts/toy/v3"
    uris = {"v1": (f"{home}/artifacts/toy/v1", f"{home}/reports/toy/v1.md"), "v2": ("artifacts/toy/v2", None),
            "v3": (elsewhere, f"{home}/reports/toy/v3.md")}
    registry.register(warehouse, [
        {"model_name": "toy", "version": v, "candidate": v, "task": "binary", "spec_sha256": "x",
         "training_as_of": datetime(2026, 1, 1), "trained_at": datetime(2026, 1, 2), "n_train": 1, "n_test": 1,
         "metrics_json": "{}", "artifact_uri": artifact, "report_uri": report, "data_snapshot": "{}",
         "code_version": "abc"} for v, (artifact, report) in uris.items()], "v1")

    def recorded():
        rows = warehouse.read("SELECT version, artifact_uri, report_uri FROM vigil_models.model_versions")
        return {r.version: (r.artifact_uri, r.report_uri if isinstance(r.report_uri, str) else None)
                for r in rows.itertuples()}

    assert cmd_init(argparse.Namespace(roles=False), settings) == 0
    assert "registry: 2 model version(s)" in capsys.readouterr().out
    expected = {"v1": ("artifacts/toy/v1", "reports/toy/v1.md"), "v2": ("artifacts/toy/v2", None),
                "v3": (elsewhere, "reports/toy/v3.md")}
    assert recorded() == expected
    assert cmd_init(argparse.Namespace(roles=False), settings) == 0
    assert "registry:" not in capsys.readouterr().out and recorded() == expected


def _airflow_alone(monkeypatch) -> None:
    """No Airflow setting of the test session: Vigil's own, as `vigil airflow` has them."""
    import os

    for key in [k for k in os.environ if k in ("AIRFLOW_HOME", "AIRFLOW_CONFIG") or k.startswith("AIRFLOW__")]:
        monkeypatch.delenv(key)


def _jwt_secret(text: str) -> str:
    import configparser

    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(text)
    return parser.get("api_auth", "jwt_secret")


def test_an_airflow_generated_config_is_moved_aside_for_vigils(tmp_path, monkeypatch, capsys):
    """An older home keeps the airflow.cfg Airflow wrote itself (absolute paths, a 24-byte JWT
    secret); Vigil's replaces it, the original kept aside for its owner only."""
    import os
    import stat
    from pathlib import Path

    from pipeline.cli import AIRFLOW_CFG_HEADER, airflow_config

    _airflow_alone(monkeypatch)
    airflow_home = tmp_path / "airflow"
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "config", "get-value", "core", "load_examples"],
                   env={**os.environ, "AIRFLOW_HOME": str(airflow_home)}, check=True, capture_output=True, timeout=120)
    generated = (airflow_home / "airflow.cfg").read_text()
    assert str(airflow_home) in generated and len(_jwt_secret(generated)) < 64  # what Airflow writes

    path = airflow_config(airflow_home)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and "airflow.cfg.before-vigil" in printed[0]
    aside = airflow_home / "airflow.cfg.before-vigil"
    assert aside.read_text() == generated and stat.S_IMODE(aside.stat().st_mode) == 0o600
    written = path.read_text()
    assert written.startswith(AIRFLOW_CFG_HEADER + "\n") and str(tmp_path) not in written
    assert len(_jwt_secret(written).encode()) >= 64 and stat.S_IMODE(path.stat().st_mode) == 0o600

    assert airflow_config(airflow_home).read_text() == written and capsys.readouterr().out == ""  # Vigil's stays
    path.write_text(written.replace(_jwt_secret(written), "short"))  # Vigil's header, a short secret: replaced
    airflow_config(airflow_home)
    assert "before-vigil" in capsys.readouterr().out and len(_jwt_secret(path.read_text()).encode()) >= 64


def test_airflow_is_prepared_once_per_home_and_again_for_new_pool_slots(settings, tmp_path, monkeypatch):
    """`db migrate` and `pools set` run on a home's first Airflow command, not on the next, and
    again when the pools' slots change (the stamp also names apache-airflow-core's version)."""
    import json
    from importlib.metadata import version
    from pathlib import Path

    from pipeline.cli import run_airflow
    from pipeline.config import load_settings

    _airflow_alone(monkeypatch)
    calls, real_run = [], subprocess.run

    def recording(argv, *args, **kwargs):
        calls.append([Path(argv[0]).name, *argv[1:]])
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording)

    def airflow_calls(settings) -> list[list[str]]:
        calls.clear()
        run_airflow(settings, ["dags", "list"], log_file=tmp_path / "dags-list.log")
        return [call[1:] for call in calls if call[0] == "airflow"]

    first = airflow_calls(settings)
    assert first[0] == ["db", "migrate"] and first[-1] == ["dags", "list"]
    stamp = json.loads((settings.airflow_home / ".vigil-prepared").read_text())
    assert stamp["airflow_core"] == version("apache-airflow-core")
    assert airflow_calls(settings) == [["dags", "list"]]
    monkeypatch.setenv("VIGIL_GPU_POOL_SLOTS", "2")
    again = airflow_calls(load_settings())
    assert again[0] == ["db", "migrate"] and ["pools", "set", "gpu", "2"] in [call[:4] for call in again]
