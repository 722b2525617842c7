"""DAG integrity (parsing needs no database or secrets) and real `airflow dags test` runs of
the nightly DAG on the embedded SQLite warehouse and on PostgreSQL."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import airflow_env
from pipeline.stages.context import run_folder
from tests.conftest import E2E_NIGHTS, ROOT, airflow_dags_test


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_dags_parse_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) >= {"vigil_nightly", "vigil_training"}


def test_nightly_dag_is_the_flow_diagram(dagbag):
    dag = dagbag.dags["vigil_nightly"]  # get_dag would query the metadata DB
    embeds = ["embed_notes", "embed_ecg", "embed_images"]
    assert sorted(dag.task_ids) == sorted(["begin", "extract", "validate", "shards", "features", *embeds, "models",
                                           "score", "publish", "report"])
    assert dag.get_task("extract").upstream_task_ids == {"begin"}
    assert dag.get_task("validate").upstream_task_ids == {"extract"}
    assert dag.get_task("shards").upstream_task_ids == dag.get_task("models").upstream_task_ids == {"validate"}
    for task_id in ["features", *embeds]:  # side by side, each on its own, one task per shard
        assert dag.get_task(task_id).upstream_task_ids == {"shards"}
        assert type(dag.get_task(task_id)).__name__.endswith("MappedOperator")
    assert dag.get_task("score").upstream_task_ids == {"features", *embeds, "models", "shards"}
    assert type(dag.get_task("score")).__name__.endswith("MappedOperator")  # one score task per model and shard
    assert dag.get_task("publish").upstream_task_ids == {"score"}
    # the run's setup and teardown: a clear of any task re-runs the report after it, and a failed
    # publish (then a leaf: teardowns do not count) fails the run
    assert dag.get_task("begin").is_setup and dag.get_task("report").is_teardown
    assert dag.get_task("report").upstream_task_ids == {"publish", "begin"}
    for task_id in embeds:
        assert dag.get_task(task_id).queue == "gpu" and dag.get_task(task_id).pool == "gpu"
    assert dag.get_task("features").queue != "gpu"
    assert all(dag.get_task(t).retries >= 1 for t in dag.task_ids)
    assert all(dag.get_task(t).on_failure_callback and dag.get_task(t).on_retry_callback for t in dag.task_ids)
    assert {(dag.get_task(t).priority_weight, dag.get_task(t).weight_rule) for t in dag.task_ids} == {(100, "absolute")}


def test_training_never_takes_the_nights_slots(dagbag):
    dag = dagbag.dags["vigil_training"]
    assert {(t.pool, t.priority_weight, t.weight_rule) for t in dag.tasks} == {("training", 1, "absolute")}


@pytest.mark.parametrize("setting, cron", [(None, "0 0 * * *"), ("30 2 * * *", "30 2 * * *"), ("none", None)])
def test_the_nightly_schedule_comes_from_configuration(monkeypatch, setting, cron):
    from airflow.dag_processing.dagbag import DagBag

    if setting is None:
        monkeypatch.delenv("VIGIL_NIGHTLY_SCHEDULE", raising=False)
    else:
        monkeypatch.setenv("VIGIL_NIGHTLY_SCHEDULE", setting)
    dag = DagBag(dag_folder=str(ROOT / "dags" / "vigil_nightly.py")).dags["vigil_nightly"]
    assert getattr(dag.timetable, "_expression", None) == cron
    assert dag.doc_md and "nightly" in dag.doc_md.lower()
    assert dag.catchup is False and dag.max_active_runs == 1


def test_dag_files_are_thin_wiring():
    for path in (ROOT / "dags").glob("*.py"):
        source = path.read_text()
        assert len(source.splitlines()) <= 110, path.name
        top_level_imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        assert not any("pipeline" in line or "torch" in line or "pandas" in line for line in top_level_imports), \
            f"{path.name} imports heavy modules at parse time"


def test_night_for_a_run():
    from datetime import datetime, timezone

    from pipeline.stages.context import night_for_run

    scheduled = night_for_run(datetime(2026, 1, 29, tzinfo=timezone.utc), datetime(2026, 1, 30, tzinfo=timezone.utc))
    assert str(scheduled) == "2026-01-29"


@pytest.mark.slow
def test_airflow_dags_test_of_the_nightly_dag_is_green(trained):
    wh = trained["warehouse"]
    night = E2E_NIGHTS[1]
    before = wh.read("SELECT risk_rows_sha256 FROM vigil_audit.runs WHERE night = :n", {"n": night})
    result = airflow_dags_test(trained["settings"], "vigil_nightly", night)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "state=success" in output
    after = wh.read("SELECT run_id, risk_rows_sha256 FROM vigil_audit.runs WHERE night = :n", {"n": night})
    airflow_runs = after[after["run_id"].str.startswith("manual__")]
    assert len(airflow_runs) == 1
    # the run through Airflow publishes exactly what `vigil run` published for the same night
    assert set(after["risk_rows_sha256"]) == set(before["risk_rows_sha256"])
    assert os.path.exists(run_folder(night, trained["settings"]) / "report" / "report.json")


@pytest.mark.slow
def test_airflow_dags_test_of_the_training_dag_promotes_when_asked(tmp_path, monkeypatch):
    """A run triggered with ``{"promote": true}`` promotes each spec's selected version. One spec
    here (a models folder of its own): the training DAG over all four specs, one mapped task
    each, is run by ``tests/test_research_models.py``'s fixture."""
    import shutil
    from datetime import date, datetime

    from pipeline.config import load_settings
    from pipeline.synthetic import cohort as synthetic
    from pipeline.store.warehouse import connect
    from tests.conftest import make_env

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(ROOT / "models" / "icu_mortality.yaml", models)
    monkeypatch.setenv("VIGIL_MODELS_DIR", str(models))
    settings = load_settings({**os.environ, **make_env(tmp_path / "home")})
    wh = connect(settings)
    wh.create_schema()
    synthetic.write(wh, synthetic.generate(220, datetime(2026, 1, 1), 20, seed=5), settings.filestore, progress=False)
    result = airflow_dags_test(settings, "vigil_training", date(2026, 1, 21), conf={"promote": True})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    versions = wh.read("SELECT model_name, candidate, promoted, selected, training_as_of "
                       "FROM vigil_models.model_versions", times=("training_as_of",))
    assert sorted(versions["candidate"]) == ["early_fusion", "late_fusion_stack", "xgboost_tabular"]
    promoted = versions[versions["promoted"].astype(bool)]
    assert list(promoted["model_name"]) == ["icu_mortality"] and promoted["selected"].astype(bool).all()
    assert (versions["training_as_of"] == datetime(2026, 1, 21)).all()


def _readable(path: Path) -> bytes:
    """A run file's content where a path would show: a Parquet file's values (its pages are
    compressed), any other file's bytes."""
    import pandas as pd

    return pd.read_parquet(path).to_csv().encode() if path.suffix == ".parquet" else path.read_bytes()


@pytest.mark.slow
def test_a_moved_home_runs_a_night_with_nothing_pointing_at_its_old_place(trained_sqlite, tmp_path, monkeypatch):
    """A restore from backup or a new mount point: the home is used through Airflow, moved, and
    used again. The registry holds relative paths only, and neither it, Airflow's config, the new
    night's run folder nor its logs name a place the home was before: the fixture's home it was
    trained in, or the copy's old place (both still exist, so a path to either would load)."""
    import dataclasses
    import shutil

    from pipeline.cli import run_airflow
    from tests.conftest import clone_home

    for key in [k for k in os.environ if k in ("AIRFLOW_HOME", "AIRFLOW_CONFIG") or k.startswith("AIRFLOW__")]:
        monkeypatch.delenv(key)  # Vigil's own Airflow settings, as `vigil airflow` has them
    night = E2E_NIGHTS[1]
    trained_in = trained_sqlite["settings"].home
    old = clone_home(trained_sqlite, tmp_path / "old-place")
    old["warehouse"].dispose()
    run_airflow(old["settings"], ["dags", "list"], log_file=tmp_path / "first.log")  # Airflow's home, config, DB
    new_home = tmp_path / "new-place"
    shutil.move(old["settings"].home, new_home)
    shutil.copytree(new_home, tmp_path / "old-place")  # a copy left behind: a path to it would load, silently
    settings = dataclasses.replace(old["settings"], home=new_home, filestore=new_home / "files",
                                   warehouse_url=f"sqlite:///{new_home / 'warehouse' / 'vigil.db'}")
    run_airflow(settings, ["dags", "test", "vigil_nightly", night.isoformat()], log_file=tmp_path / "second.log")
    assert "state=success" in (tmp_path / "second.log").read_text()

    from pipeline.store.warehouse import connect

    wh = connect(settings)
    registry = wh.read("SELECT artifact_uri, report_uri FROM vigil_models.model_versions")
    wh.dispose()
    recorded = registry.to_numpy().ravel().tolist()
    assert recorded and all(isinstance(uri, str) and not Path(uri).is_absolute() for uri in recorded), recorded
    before = [str(trained_in), str(tmp_path / "old-place")]
    folder = run_folder(night, settings)
    manifest = json.loads((folder / "extract" / "manifest.json").read_text())
    assert manifest["run_id"].startswith("manual__")  # the new night's folder, not one copied with the home
    assert {m["artifact_uri"] for m in manifest["models"].values()} <= set(registry["artifact_uri"])
    night_log = (tmp_path / "second.log").read_text()
    assert str(new_home) in night_log  # the log does record paths (the report's)
    written = {"second.log": night_log.encode(),
               **{path: _readable(path) for path in folder.rglob("*") if path.is_file()},
               **{path: path.read_bytes() for path in (new_home / "airflow").rglob("*")
                  if path.is_file() and path.name != "airflow.db"}}  # config, prepared stamp, any task logs
    assert new_home / "airflow" / "airflow.cfg" in written
    assert not [(str(path), place) for path, data in written.items() for place in before if place.encode() in data]
    config = (new_home / "airflow" / "airflow.cfg").read_text()
    assert str(new_home) not in config and str(tmp_path) not in config  # no path at all: the environment has them
    airflow = str(Path(sys.executable).parent / "airflow")  # where a scheduler of this home writes task logs
    log_folder = subprocess.run([airflow, "config", "get-value", "logging", "base_log_folder"],
                                env=airflow_env(settings), capture_output=True, text=True,
                                timeout=120).stdout.strip().splitlines()[-1]
    assert log_folder == str(new_home / "airflow" / "logs")
