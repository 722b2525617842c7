"""The production topology on one machine, with the real services and no Docker.

Starts Airflow's scheduler, DAG processor and API server with the CeleryExecutor (Redis as
the broker, a PostgreSQL database as Airflow's metadata store and Celery result backend) and two
Celery workers, one consuming the ``default`` queue and one the ``gpu`` queue, as
``docker-compose.yml`` deploys them. It then triggers the nightly DAG for one night through
the REST API, waits for the run, reads back which worker ran each task, and stops every process
it started by PID (each in its own process group), also when something fails.

    bash scripts/topology.sh --night 2026-03-01            # VIGIL_HOME: a trained home
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path


from pipeline.cli import prepare_airflow
from pipeline.config import GPU_QUEUE, Settings, load_settings

WORKER_NAME_VARIABLE = "VIGIL_WORKER_NAME"
QUEUES = {"default": 2, GPU_QUEUE: 2}  # queue -> Celery worker concurrency (gpu: an embedding beside a training task)


def workers(default_workers: int = 1) -> dict[str, tuple[str, int]]:
    """Celery workers by name: their queue and concurrency. Several default-queue workers (as
    several machines would run) split the default queue's concurrency, at least one slot each,
    so a night's shard tasks spread over them.

    >>> workers(2)
    {'default-1': ('default', 1), 'default-2': ('default', 1), 'gpu': ('gpu', 2)}
    """
    if default_workers < 1:
        raise ValueError(f"at least one default-queue worker is needed, not {default_workers}")
    found = {"default": ("default", QUEUES["default"])} if default_workers == 1 else {
        f"default-{i}": ("default", max(1, QUEUES["default"] // default_workers)) for i in range(1, default_workers + 1)}
    return {**found, GPU_QUEUE: (GPU_QUEUE, QUEUES[GPU_QUEUE])}
USER = "vigil"


def worker_hostname() -> str:
    """Airflow's ``hostname_callable`` here: a worker's name when it has one, so task instances
    say which of the two workers on this one machine ran them."""
    return os.environ.get(WORKER_NAME_VARIABLE) or socket.getfqdn()


@dataclass
class Topology:
    folder: Path
    port: int
    password: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def topology_env(settings: Settings, folder: Path, *, metadata_url: str, broker_url: str, port: int,
                 password: str) -> dict[str, str]:
    from pipeline.cli import airflow_config, airflow_env

    env = airflow_env(settings)
    folder.mkdir(parents=True, exist_ok=True)
    airflow_config(folder / "airflow")
    passwords = folder / "passwords.json"
    passwords.write_text(json.dumps({USER: password}))
    passwords.chmod(0o600)
    sqlalchemy_url = metadata_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    env.update({
        "AIRFLOW_HOME": str(folder / "airflow"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(folder / "airflow" / "logs"),
        "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(folder / "airflow" / "logs" / "dag_processor"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "pipeline.topology.worker_hostname",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # only the night triggered through the REST API runs, not the latest scheduled interval
        "VIGIL_NIGHTLY_SCHEDULE": "none",
        "VIGIL_TASK_RETRY_DELAY_S": os.environ.get("VIGIL_TASK_RETRY_DELAY_S", "5"),
    })
    return env


def _airflow() -> str:
    return str(Path(sys.executable).parent / "airflow")


def start(settings: Settings, folder: Path, *, metadata_url: str, broker_url: str,
          default_workers: int = 1) -> Topology:
    port = free_port()
    password = secrets.token_urlsafe(16)
    env = topology_env(settings, folder, metadata_url=metadata_url, broker_url=broker_url, port=port,
                       password=password)
    topology = Topology(folder=folder, port=port, password=password, env=env)
    prepare_airflow(settings, env, _airflow())
    commands = {
        "api-server": ["api-server", "--port", str(port), "--host", "127.0.0.1"],
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
    }
    for name, (queue, concurrency) in workers(default_workers).items():
        commands[f"worker-{name}"] = ["celery", "worker", "--queues", queue, "--concurrency", str(concurrency),
                                      "--celery-hostname", f"vigil-{name}@%h"]
    try:
        for name, arguments in commands.items():
            own = dict(env)
            if name.startswith("worker-"):
                own[WORKER_NAME_VARIABLE] = f"vigil-worker-{name.removeprefix('worker-')}"
                own["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
            log = open(folder / f"{name}.log", "w")
            topology.processes[name] = subprocess.Popen([_airflow(), *arguments], env=own, stdout=log,
                                                        stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        (folder / "pids.json").write_text(json.dumps({n: p.pid for n, p in topology.processes.items()}))
        wait_until(lambda: _status(f"{topology.base_url}/api/v2/monitor/health") == 200, 180, "the API server",
                   topology)
    except BaseException:
        stop(topology)
        raise
    return topology


def stop(topology: Topology, grace_s: float = 30) -> dict[str, int | None]:
    """SIGTERM each started process group, SIGKILL what is left after ``grace_s``; exit codes."""
    for process in topology.processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in topology.processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for process in topology.processes.values():  # children the group leader left behind
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return {name: process.returncode for name, process in topology.processes.items()}


def wait_until(condition, timeout_s: float, what: str, topology: Topology | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if topology is not None:
            dead = [n for n, p in topology.processes.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}: see {topology.folder}/*.log")
        time.sleep(2)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s")


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def api(topology: Topology, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{topology.base_url}{path}", method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{method} {path}: HTTP {error.code} {error.read()[:500]!r}") from error


def token(topology: Topology) -> str:
    return api(topology, "POST", "/auth/token", {"username": USER, "password": topology.password})["access_token"]


def run_night_on_celery(topology: Topology, night: date, timeout_s: float = 1200) -> dict:
    """Trigger ``vigil_nightly`` for ``night`` through the REST API and wait for it to finish:
    the run's state and, per task, its state, queue and the worker (hostname) that ran it."""
    jwt = token(topology)

    def dag_parsed() -> bool:
        try:
            api(topology, "GET", "/api/v2/dags/vigil_nightly", token=jwt)
            return True
        except RuntimeError:
            return False

    wait_until(dag_parsed, 300, "the nightly DAG to be parsed", topology)
    api(topology, "PATCH", "/api/v2/dags/vigil_nightly", {"is_paused": False}, token=jwt)
    run = api(topology, "POST", "/api/v2/dags/vigil_nightly/dagRuns",
              {"dag_run_id": f"topology__{night.isoformat()}__{secrets.token_hex(3)}",
               "logical_date": f"{night.isoformat()}T00:00:00Z"}, token=jwt)
    return wait_for_run(topology, run["dag_run_id"], timeout_s)


def wait_for_run(topology: Topology, run_id: str, timeout_s: float = 1200) -> dict:
    """The run's state once it has finished, and per task its state, queue, worker and how long
    it waited to start once it was ready: ``waited_s`` from scheduled (its upstream done; the wait
    for a slot of parallelism or of its pool starts there) and ``queued_s`` from queued (handed to
    Celery) to running."""
    jwt = token(topology)
    state = {}

    def finished() -> bool:
        state.update(api(topology, "GET", f"/api/v2/dags/vigil_nightly/dagRuns/{run_id}", token=jwt))
        return state["state"] in ("success", "failed")

    wait_until(finished, timeout_s, f"run {run_id}", topology)
    tasks = api(topology, "GET", f"/api/v2/dags/vigil_nightly/dagRuns/{run_id}/taskInstances", token=jwt)
    return {"run_id": run_id, "state": state["state"], "tasks": {_task_key(t): {
        "state": t["state"], "queue": t["queue"], "hostname": t["hostname"], "pool": t["pool"],
        "try_number": t["try_number"], "start_date": t.get("start_date"), "end_date": t.get("end_date"),
        "waited_s": _seconds(t.get("scheduled_when") or t.get("queued_when"), t.get("start_date")),
        "queued_s": _seconds(t.get("queued_when"), t.get("start_date"))} for t in tasks["task_instances"]}}


def _task_key(task: dict) -> str:
    """A task instance's name: its task id, and ``[i]`` for the i-th of a mapped task."""
    return task["task_id"] + (f"[{task['map_index']}]" if task.get("map_index", -1) >= 0 else "")


def _seconds(start: str | None, end: str | None) -> float | None:
    """Seconds between two of the API's ISO timestamps (a task's wait in the queue)."""
    from datetime import datetime

    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 1)


def training_state(topology: Topology, run_id: str) -> dict:
    """The training run's state and how many of its train tasks are running or done."""
    jwt = token(topology)
    run = api(topology, "GET", f"/api/v2/dags/vigil_training/dagRuns/{run_id}", token=jwt)
    tasks = api(topology, "GET", f"/api/v2/dags/vigil_training/dagRuns/{run_id}/taskInstances", token=jwt)
    states = [t["state"] for t in tasks["task_instances"] if t["task_id"] == "train"]
    return {"state": run["state"], "train_tasks": len(states),
            "train_running": states.count("running"), "train_done": states.count("success")}


def start_training(topology: Topology) -> str:
    """Trigger ``vigil_training`` and wait until one of its train tasks runs; its run id."""
    jwt = token(topology)
    api(topology, "PATCH", "/api/v2/dags/vigil_training", {"is_paused": False}, token=jwt)
    run_id = api(topology, "POST", "/api/v2/dags/vigil_training/dagRuns",
                 {"dag_run_id": f"topology__training__{secrets.token_hex(3)}", "logical_date": None,
                  "conf": {"promote": False}}, token=jwt)["dag_run_id"]

    def training() -> bool:
        tasks = api(topology, "GET", f"/api/v2/dags/vigil_training/dagRuns/{run_id}/taskInstances", token=jwt)
        return any(t["task_id"] == "train" and t["state"] == "running" for t in tasks["task_instances"])

    wait_until(training, 600, "a training task to run", topology)
    return run_id


def clear(topology: Topology, run_id: str, task_ids: list[str] | None = None, timeout_s: float = 900) -> dict:
    """Clear a finished run's ``task_ids`` (none: the whole run) as an operator would in the UI,
    then wait for the run to finish again."""
    jwt = token(topology)
    if task_ids is None:
        api(topology, "POST", f"/api/v2/dags/vigil_nightly/dagRuns/{run_id}/clear",
            {"dry_run": False, "only_failed": False}, token=jwt)
    else:
        api(topology, "POST", "/api/v2/dags/vigil_nightly/clearTaskInstances",
            {"dry_run": False, "dag_run_id": run_id, "task_ids": task_ids, "only_failed": False,
             "reset_dag_runs": True, "include_upstream": False, "include_downstream": False}, token=jwt)
    return wait_for_run(topology, run_id, timeout_s)


def operate(topology: Topology, settings: Settings, night: date, run_id: str) -> list[dict]:
    """What an on-call engineer does to a finished night, under the real scheduler: clear
    ``extract`` alone and an embedding task alone (the tasks after them keep their state and
    their files: the publish cleared next re-publishes the same rows from them), ``publish``,
    ``score``, ``report``, then the whole run (each must end ``success`` with the night's risk
    rows unchanged), then ``publish`` again while the audit table is away (the run must end
    ``failed``) and once more after it is back."""
    from pipeline.store import runs
    from pipeline.store.warehouse import connect

    warehouse = connect(settings)

    def step(name: str, outcome: dict) -> dict:
        digest = runs.risk_rows_sha256(warehouse, night) if warehouse.table_exists("vigil_audit.runs") else None
        tasks = {t: {"state": v["state"], "try_number": v["try_number"]} for t, v in outcome["tasks"].items()}
        print(f"  {name:<24} run {outcome['state']:<8} publish {tasks['publish']['state']}", flush=True)
        return {"step": name, "state": outcome["state"], "risk_rows_sha256": digest, "tasks": tasks}

    steps = []
    try:
        for name, task_ids in (("clear extract", ["extract"]), ("clear embed_ecg", ["embed_ecg"]),
                               ("clear publish", ["publish"]), ("clear score", ["score"]), ("clear report", ["report"]),
                               ("clear the whole run", None)):
            steps.append(step(name, clear(topology, run_id, task_ids)))
        with warehouse.begin() as conn:
            warehouse.rename_table(conn, "vigil_audit.runs", "runs_away")
        try:
            steps.append(step("clear publish, audit away", clear(topology, run_id, ["publish"])))
        finally:
            with warehouse.begin() as conn:
                warehouse.rename_table(conn, "vigil_audit.runs_away", "runs")
        steps.append(step("clear publish, audit back", clear(topology, run_id, ["publish"])))
    finally:
        warehouse.dispose()
    return steps


def main(argv: list[str] | None = None) -> int:
    from pipeline.store.warehouse import ensure_database

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--night", type=date.fromisoformat, required=True, help="the night to score (YYYY-MM-DD)")
    parser.add_argument("--metadata-db", default="vigil_airflow",
                        help="PostgreSQL database for Airflow's metadata (created if missing)")
    parser.add_argument("--postgres", default=os.environ.get("VIGIL_TOPOLOGY_POSTGRES",
                                                             "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="an admin URL of the PostgreSQL server")
    parser.add_argument("--broker", default=os.environ.get("VIGIL_TOPOLOGY_BROKER", "redis://127.0.0.1:6379/5"))
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for the run")
    parser.add_argument("--operations", action="store_true",
                        help="then clear publish, score, report and the whole run, and fail publish once")
    parser.add_argument("--default-workers", type=int, default=1,
                        help="Celery workers on the default queue (with VIGIL_SHARDS > 1 they share a night's shards)")
    parser.add_argument("--beside-training", action="store_true",
                        help="start the training DAG first and run the night while it trains (queue waits)")
    args = parser.parse_args(argv)
    settings = load_settings()
    folder = settings.home / "topology"
    metadata_url = ensure_database(args.postgres, args.metadata_db)
    print(f"starting: api-server, scheduler, dag-processor, Celery workers "
          f"{', '.join(workers(args.default_workers))} (logs in {folder})", flush=True)
    topology = start(settings, folder, metadata_url=metadata_url, broker_url=args.broker,
                     default_workers=args.default_workers)
    steps = []
    try:
        print(f"pids: {json.dumps({n: p.pid for n, p in topology.processes.items()})}", flush=True)
        training = start_training(topology) if args.beside_training else None
        result = run_night_on_celery(topology, args.night, args.timeout)
        if training:
            result["training_run"] = {"run_id": training, **training_state(topology, training)}
            waits = sorted(t["waited_s"] for t in result["tasks"].values() if t["waited_s"] is not None) or [0.0]
            result["beside_training"] = {"max_wait_s": waits[-1], "median_wait_s": waits[len(waits) // 2]}
            print(f"night beside training: nightly tasks waited {waits[-1]:.1f} s at most from ready to running "
                  f"(median {waits[len(waits) // 2]:.1f} s); training {result['training_run']['state']} with "
                  f"{result['training_run']['train_running']} train task(s) running when the night ended", flush=True)
        if args.operations and result["state"] == "success":
            steps = operate(topology, settings, args.night, result["run_id"])
    finally:
        codes = stop(topology)
        print(f"stopped: {json.dumps(codes)}", flush=True)
    for task_id, task in sorted(result["tasks"].items()):
        print(f"  {task_id:<14} {task['state']:<8} queue={task['queue']:<8} worker={task['hostname']}")
    (folder / "result.json").write_text(json.dumps({**result, "stopped": codes, "operations": steps}, indent=2))
    print(f"run {result['run_id']}: {result['state']}")
    if training and result["training_run"]["state"] != "running":
        print("the training run had finished before the night did: the night was not run beside it", flush=True)
        return 1
    return 0 if result["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
