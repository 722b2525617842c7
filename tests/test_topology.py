"""The docker-compose topology on the real local services: scripts/topology.sh starts the
Airflow scheduler, DAG processor and API server on the CeleryExecutor (Redis, PostgreSQL
metadata) with two default-queue and a gpu-queue Celery worker, runs a night in two shards
through the REST API and stops every process it started."""

import json
import os
import subprocess
import uuid

import pytest
from sqlalchemy import text

from pipeline.config import PROJECT_ROOT
from pipeline.nightly import run_night
from tests.conftest import E2E_NIGHTS, PG_ADMIN_URL

pytestmark = pytest.mark.slow

EMBED_TASKS = {"embed_notes", "embed_ecg", "embed_images"}


def test_a_night_runs_in_shards_on_celery_workers_with_embeddings_on_the_gpu_queue(cloned_postgres,
                                                                                   postgres_server):
    import redis

    settings = cloned_postgres["settings"]
    metadata = f"vigil_airflow_{uuid.uuid4().hex[:10]}"
    broker = "redis://127.0.0.1:6379/9"
    redis.Redis.from_url(broker).flushdb()  # no message left by an earlier, killed run
    warehouse = cloned_postgres["warehouse"]
    tonight = ("SELECT encoder_id, content_hash FROM vigil_features.embeddings WHERE content_hash IN "
               "(SELECT content_hash FROM vigil_features.stay_records WHERE ingest_night = :n)")
    removed = warehouse.read(tonight, {"n": E2E_NIGHTS[-1]})
    assert set(removed["encoder_id"].str.split(":").str[0]) >= {"text", "ecg", "image"}, removed
    with warehouse.begin() as conn:  # the Celery workers decode and embed the night's files again
        conn.execute(text("DELETE FROM vigil_features.embeddings WHERE content_hash IN "
                          "(SELECT content_hash FROM vigil_features.stay_records WHERE ingest_night = :n)"),
                     {"n": E2E_NIGHTS[-1]})
    env = {**os.environ, "VIGIL_HOME": str(settings.home), "VIGIL_WAREHOUSE_URL": settings.warehouse_url,
           "VIGIL_FILESTORE": str(settings.filestore), "VIGIL_SHARDS": "2"}
    try:
        result = subprocess.run(
            ["bash", str(PROJECT_ROOT / "scripts" / "topology.sh"), "--night", E2E_NIGHTS[-1].isoformat(),
             "--metadata-db", metadata, "--postgres", PG_ADMIN_URL.replace("+psycopg2", ""), "--broker", broker,
             "--timeout", "900", "--operations", "--default-workers", "2"],
            env=env, capture_output=True, text=True, timeout=1500)
        folder = settings.home / "topology"
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(folder.glob("*.log")))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + logs
        outcome = json.loads((folder / "result.json").read_text())
    finally:
        with postgres_server.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {metadata} WITH (FORCE)"))
    assert outcome["state"] == "success", outcome
    tasks = outcome["tasks"]
    base = {task_id: task_id.split("[")[0] for task_id in tasks}  # features[1]: shard 1's features task
    assert {f"{t}[{k}]" for t in ("features", "score", *EMBED_TASKS) for k in (0, 1)} <= set(tasks)
    assert all(t["state"] == "success" for t in tasks.values())
    defaults = {"vigil-worker-default-1", "vigil-worker-default-2"}
    for task_id, task in tasks.items():
        if base[task_id] in EMBED_TASKS:
            assert (task["queue"], task["hostname"], task["pool"]) == ("gpu", "vigil-worker-gpu", "gpu"), task_id
        else:
            assert task["queue"] == "default" and task["hostname"] in defaults, (task_id, task)
    # both default-queue workers took shard tasks of the one night
    assert {t["hostname"] for i, t in tasks.items() if base[i] in ("features", "score")} == defaults, tasks
    pids = json.loads((folder / "pids.json").read_text())
    assert set(pids) == {"api-server", "scheduler", "dag-processor", "worker-default-1", "worker-default-2",
                         "worker-gpu"}
    for name, pid in pids.items():  # every process it started is gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert all(code is not None for code in outcome["stopped"].values())
    night_rows = cloned_postgres["warehouse"].scalar(
        "SELECT COUNT(*) FROM vigil_risk.risk_scores WHERE night = :n", {"n": E2E_NIGHTS[-1]})
    assert night_rows > 0
    restored = warehouse.read(tonight, {"n": E2E_NIGHTS[-1]})  # each embedded again inside a Celery worker
    assert set(map(tuple, restored.to_numpy())) >= set(map(tuple, removed.to_numpy()))

    # an on-call engineer's clears, under the real scheduler: each re-runs to the same state, and a
    # publish that fails fails the run (the report, its teardown, does not decide the run's state)
    steps = {s["step"]: s for s in outcome["operations"]}
    digest = cloned_postgres["warehouse"].scalar("SELECT risk_rows_sha256 FROM vigil_audit.runs WHERE night = :n",
                                                 {"n": E2E_NIGHTS[-1]})
    for name in ("clear extract", "clear embed_ecg", "clear publish", "clear score", "clear report",
                 "clear the whole run", "clear publish, audit back"):
        assert steps[name]["state"] == "success" and steps[name]["risk_rows_sha256"] == digest, steps[name]
        assert steps[name]["tasks"]["report"]["state"] == "success", name  # the report follows every clear
    cleared = steps["clear extract"]["tasks"]  # the cleared task ran again, with its setup and teardown ...
    assert cleared["extract"]["try_number"] == cleared["begin"]["try_number"] == cleared["report"]["try_number"] == 2
    assert cleared["publish"]["try_number"] == cleared["features[0]"]["try_number"] == 1  # ... and nothing else
    cleared = steps["clear publish"]["tasks"]  # after extract and embed_ecg alone: the run's files still fit
    assert cleared["publish"]["try_number"] == 2 and cleared["report"]["try_number"] == 4
    # the night unsharded, in this process, from the embeddings the workers cached (vectors computed
    # in another process may differ in their last bits): the risk rows the two shards on two workers gave
    assert run_night(E2E_NIGHTS[-1], settings)["publish"]["risk_rows_sha256"] == digest
    failed = steps["clear publish, audit away"]
    assert failed["state"] == "failed" and failed["tasks"]["publish"]["state"] == "failed", failed
    assert failed["tasks"]["publish"]["try_number"] >= 3  # retried twice before it failed the run
