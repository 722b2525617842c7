"""The production topology: docker-compose.yml, the Dockerfile, docker/ and .env.example.

There is no Docker engine where the tests run, so the files are checked against what they
drive: the compose file is parsed and interpolated from .env.example as Compose does, every
container command is run through the image's real entry point with stand-in programs, and the
commands that result are parsed by Airflow's and Vigil's own command-line parsers; the settings
are read by Vigil's own configuration code, and the queues and pools are those of the DAGs.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from pipeline.cli import POOLS, build_parser
from pipeline.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
POSTGRES_INIT = ROOT / "docker" / "postgres-init"
ENV_EXAMPLE = ROOT / ".env.example"

AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker", "airflow-worker-gpu")
REQUIRED_SERVICES = ("postgres", "redis", *AIRFLOW_SERVICES)
ONE_SHOT = ("airflow-init",)
BI_SERVICE = "metabase"
SECRET = re.compile(r"PASSWORD|SECRET|FERNET")
CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"

# ----------------------------------------------------------------------------- reading the files

_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
                       r"|(?P<bare>[A-Za-z_]\w*))")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ``${X}``, ``${X:-default}``, ``${X-default}``, ``${X:?error}``,
    ``${X?error}``, ``${X:+alt}`` and ``$$`` (a literal ``$``, for the container's shell)."""
    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["braced"] or match["bare"], match["op"], match["arg"]
        value = env.get(name)
        if op == ":-":
            return value or arg
        if op == "-":
            return arg if value is None else value
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise ValueError(f"required variable {name} is unset: {arg}")
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return "" if value is None else arg
        return value or ""

    return _VARIABLE.sub(substitute, text)


def _walk_strings(node, visit):
    if isinstance(node, str):
        return visit(node)
    if isinstance(node, dict):
        return {_walk_strings(k, visit): _walk_strings(v, visit) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk_strings(v, visit) for v in node]
    return node


@cache
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@cache
def env_example() -> dict[str, str]:
    entries = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            entries[name.strip()] = value.strip()
    return entries


def filled_env() -> dict[str, str]:
    """.env.example with every empty value (the secrets an operator must set) filled in."""
    return {name: value or f"x{name.lower().replace('_', '')}" for name, value in env_example().items()}


@cache
def compose() -> dict:
    """The compose file as Compose sees it: anchors merged, variables from .env filled in."""
    env = filled_env()
    return _walk_strings(raw_compose(), lambda s: interpolate(s, env))


def referenced_variables() -> dict[str, set[str]]:
    """Every variable the compose file reads, with the operators it is read with."""
    found: dict[str, set[str]] = {}

    def visit(text: str) -> str:
        for match in _VARIABLE.finditer(text):
            if not match["escaped"]:
                found.setdefault(match["braced"] or match["bare"], set()).add(match["op"] or "")
        return text

    _walk_strings(raw_compose(), visit)
    return found


def services() -> dict[str, dict]:
    return compose()["services"]


def environment(service: str) -> dict[str, str]:
    env = services()[service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command(service: str) -> list[str]:
    value = services()[service].get("command", [])
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def healthcheck_argv(service: str) -> list[str]:
    """The health check as the container runs it (``CMD-SHELL`` through ``sh -c``)."""
    test = services()[service]["healthcheck"]["test"]
    test = shlex.split(test) if isinstance(test, str) else test
    if test[0] == "CMD":
        return test[1:]
    assert test[0] == "CMD-SHELL", f"{service}: health check test must be CMD or CMD-SHELL, not {test[0]}"
    return ["sh", "-c", " ".join(test[1:])]


def queues(argv: list[str]) -> set[str]:
    for i, arg in enumerate(argv):
        if arg in ("--queues", "-q"):
            return set(argv[i + 1].split(","))
        if arg.startswith("--queues="):
            return set(arg.split("=", 1)[1].split(","))
    return set()


@cache
def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip():
            instruction, _, args = current.strip().partition(" ")
            logical.append((instruction.upper(), args.strip()))
        current = ""
    return logical


def dockerfile_env() -> dict[str, str]:
    env = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    return env


def dockerfile_copies() -> list[tuple[list[str], str]]:
    """(sources, absolute destination) of every COPY, relative destinations resolved by WORKDIR."""
    copies, workdir = [], PurePosixPath("/")
    for instruction, args in dockerfile():
        if instruction == "WORKDIR":
            workdir = workdir / args
        elif instruction == "COPY":
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            *sources, destination = parts
            copies.append((sources, str(workdir / destination)))
    return copies


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (or a folder above it) out of the build context."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in dockerignore_patterns():
        anywhere = pattern.startswith("**/")
        for prefix in prefixes:
            name = PurePosixPath(prefix).name
            if fnmatch.fnmatch(prefix, pattern) or (anywhere and fnmatch.fnmatch(name, pattern[3:])):
                return True
    return False


def config_variables() -> tuple[set[str], set[str]]:
    """The VIGIL_* names pipeline/config.py reads (``env.get("X")``, ``env["X"]``) and the
    prefixes it reads a family of variables by (``k.startswith(prefix)``)."""
    tree = ast.parse((ROOT / "pipeline" / "config.py").read_text())
    names, prefixes = set(), set()
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "env" and node.args:
            key = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "env":
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and re.fullmatch(r"VIGIL_[A-Z_]+_", node.value):
            prefixes.add(node.value)
    return {n for n in names if n.startswith("VIGIL_")}, prefixes


def dag_sources() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "dags").glob("*.py")))


# ----------------------------------------------------------------------------- running commands

FAKE_PROGRAMS = ("airflow", "vigil", "celery", "curl", "pg_isready", "redis-cli")
HOSTNAME = "node-1"  # the container's $HOSTNAME, which the health checks name themselves by


@pytest.fixture(scope="module")
def run_in_image(tmp_path_factory):
    """Runs argv as a container of ``service`` would: the image's entry point (or ``sh -c`` for a
    health check) with that service's environment, where the image's programs are stand-ins
    that record how they were called. Returns the recorded calls, in order."""
    fakes = tmp_path_factory.mktemp("programs")
    for name in FAKE_PROGRAMS:
        path = fakes / name
        path.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                        "with open(os.environ['RECORDED_CALLS'], 'a') as log:\n"
                        "    log.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + '\\n')\n")
        path.chmod(0o755)
    counter = iter(range(10_000))

    def run(service: str, argv: list[str], through_entrypoint: bool = True):
        log = fakes / f"calls-{next(counter)}.jsonl"
        env = {"PATH": f"{fakes}{os.pathsep}{os.environ['PATH']}", "HOME": str(fakes), "HOSTNAME": HOSTNAME,
               **environment(service), "RECORDED_CALLS": str(log)}
        full = ["bash", str(ENTRYPOINT), *argv] if through_entrypoint else argv
        result = subprocess.run(full, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{service}: {full} failed: {result.stderr}"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return run


AIRFLOW_PROBE = """
import importlib, json, sys
from airflow.cli import cli_parser
from airflow.configuration import conf
from pipeline.config import load_settings

parser = cli_parser.get_parser()
rejected = []
for argv in json.loads(sys.argv[1]):
    try:
        parser.parse_args(argv)
    except SystemExit:
        rejected.append(argv)
module, _, attribute = sys.argv[2].rpartition(".")
app = getattr(importlib.import_module(module), attribute, None)
print(json.dumps({
    "rejected": rejected,
    "celery_app": type(app).__module__ + "." + type(app).__name__,
    "default_queue": conf.get("operators", "default_queue"),
    "scheduler_health_port": conf.getint("scheduler", "scheduler_health_check_server_port"),
    "api_port": conf.getint("api", "port"),
    "warehouse_url": load_settings().warehouse_url,
}))
"""


@pytest.fixture(scope="module")
def airflow_probe(run_in_image, tmp_path_factory):
    """Every ``airflow`` call the services make (commands, airflow-init, health checks), parsed by
    Airflow's own parser in the workers' environment, plus what that environment configures."""
    calls = []
    for service in AIRFLOW_SERVICES:
        calls += run_in_image(service, command(service))
        if "healthcheck" in services()[service]:
            calls += run_in_image(service, healthcheck_argv(service), through_entrypoint=False)
    airflow_calls = [call[1:] for call in calls if call[0] == "airflow"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIGIL_"))}
    env.update(environment("airflow-worker"))
    env["AIRFLOW_HOME"] = str(tmp_path_factory.mktemp("airflow-home"))
    result = subprocess.run([sys.executable, "-c", AIRFLOW_PROBE, json.dumps(airflow_calls), CELERY_APP],
                            env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"calls": airflow_calls, **json.loads(result.stdout.strip().splitlines()[-1])}


# ----------------------------------------------------------------------------- services

def test_every_service_of_the_topology_is_defined():
    missing = [s for s in (*REQUIRED_SERVICES, BI_SERVICE) if s not in services()]
    assert not missing, f"missing services: {missing}"
    for service in REQUIRED_SERVICES:
        assert not services()[service].get("profiles"), f"{service} must start with a plain `docker compose up`"


def test_airflow_services_share_the_common_definition():
    common = raw_compose()["x-airflow-common"]
    assert common["image"].startswith("${VIGIL_IMAGE") and common["build"]
    for service in AIRFLOW_SERVICES:
        env = environment(service)
        for key in ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL",
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW__CORE__FERNET_KEY",
                    "AIRFLOW__API_AUTH__JWT_SECRET", "VIGIL_HOME"):
            assert env.get(key), f"{service} lost {key} (an `environment:` without `<<: *airflow-common-env`?)"
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"


def test_every_long_running_service_has_a_health_check():
    for name, service in services().items():
        if name in ONE_SHOT:
            assert service.get("restart", "no") == "no", f"{name} runs once: it must not restart"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert service.get("restart") in ("always", "unless-stopped"), f"{name} is not restarted"


def test_health_checks_probe_what_each_service_serves(run_in_image, airflow_probe):
    def probe(service):
        return run_in_image(service, healthcheck_argv(service), through_entrypoint=False)

    assert probe("postgres")[0][0] == "pg_isready" and "127.0.0.1" in probe("postgres")[0]
    assert probe("redis") == [["redis-cli", "ping"]]
    [api] = probe("airflow-apiserver")
    assert api[0] == "curl" and api[-1] == f"http://localhost:{airflow_probe['api_port']}/api/v2/version"
    [scheduler] = probe("airflow-scheduler")
    assert scheduler[-1] == f"http://localhost:{airflow_probe['scheduler_health_port']}/health"
    assert environment("airflow-scheduler")["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"].lower() == "true"
    for service, job in (("airflow-dag-processor", "DagProcessorJob"), ("airflow-triggerer", "TriggererJob")):
        [check] = probe(service)
        assert check[:3] == ["airflow", "jobs", "check"] and job in check and check[-1] == HOSTNAME
    for service in ("airflow-worker", "airflow-worker-gpu"):
        [ping] = probe(service)
        assert ping == ["celery", "--app", CELERY_APP, "inspect", "ping", "-d", f"celery@{HOSTNAME}"]
    assert airflow_probe["celery_app"] == "celery.app.base.Celery", "the worker health check's Celery app is not real"
    [bi] = probe(BI_SERVICE)
    assert bi[0] == "curl" and bi[-1].endswith(":3000/api/health")


def test_every_airflow_command_is_one_airflow_accepts(airflow_probe):
    assert not airflow_probe["rejected"], f"Airflow's CLI rejects: {airflow_probe['rejected']}"
    commands = [" ".join(call[:2]) for call in airflow_probe["calls"]]
    for expected in ("api-server", "scheduler", "dag-processor", "triggerer", "celery worker", "db migrate",
                     "pools set", "jobs check"):
        assert any(c.startswith(expected) for c in commands), f"no service runs `airflow {expected}`"


def test_the_entrypoint_runs_airflow_unless_told_otherwise(run_in_image):
    assert run_in_image("airflow-worker", ["scheduler"]) == [["airflow", "scheduler"]]
    assert run_in_image("airflow-worker", ["celery", "worker", "--queues", "gpu"]) == \
        [["airflow", "celery", "worker", "--queues", "gpu"]]
    assert run_in_image("airflow-worker", ["vigil", "top"]) == [["vigil", "top"]]
    assert run_in_image("airflow-worker", ["airflow", "version"]) == [["airflow", "version"]]


# ----------------------------------------------------------------------------- executor and queues

def test_the_executor_is_celery_with_a_redis_broker():
    for service in AIRFLOW_SERVICES:
        env = environment(service)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
        assert broker.scheme == "redis" and broker.hostname == "redis" and broker.port == 6379
        backend = make_url(env["AIRFLOW__CELERY__RESULT_BACKEND"].removeprefix("db+"))
        assert backend.host == "postgres"
        assert urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).hostname == "airflow-apiserver"
    assert "redis" in services() and "postgres" in services()


def test_workers_consume_the_default_and_gpu_queues(run_in_image, airflow_probe):
    [default_worker] = run_in_image("airflow-worker", command("airflow-worker"))
    [gpu_worker] = run_in_image("airflow-worker-gpu", command("airflow-worker-gpu"))
    assert default_worker[1:3] == gpu_worker[1:3] == ["celery", "worker"]
    assert queues(default_worker) == {airflow_probe["default_queue"]} == {"default"}
    assert queues(gpu_worker) == {"gpu"}
    dag_queues = set(re.findall(r"""queue\s*=\s*["'](\w+)["']""", dag_sources()))
    assert dag_queues and dag_queues <= queues(default_worker) | queues(gpu_worker), \
        f"DAG queues {dag_queues} without a worker"


def test_the_gpu_worker_reserves_an_nvidia_gpu_and_uses_it():
    gpu = services()["airflow-worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])
               and (int(d.get("count", 0)) >= 1 or d.get("device_ids")) for d in devices)
    assert environment("airflow-worker-gpu")["VIGIL_DEVICE"].startswith("cuda")
    default = services()["airflow-worker"]
    assert not default.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    assert not environment("airflow-worker")["VIGIL_DEVICE"].startswith("cuda")
    build_args = gpu["build"]["args"]
    declared = {args.split("=", 1)[0] for instruction, args in dockerfile() if instruction == "ARG"}
    assert set(build_args) <= declared, f"build args the Dockerfile does not declare: {set(build_args) - declared}"
    assert "cpu" in dict(a.split("=", 1) for i, a in dockerfile() if i == "ARG" and "=" in a)["TORCH_INDEX_URL"]
    assert gpu["image"] != services()["airflow-worker"]["image"], "the CUDA build needs its own image tag"


def test_airflow_init_prepares_airflow_and_the_warehouse(run_in_image):
    calls = run_in_image("airflow-init", command("airflow-init"))
    assert calls[0] == ["airflow", "db", "migrate"]
    pools = [c for c in calls if c[:3] == ["airflow", "pools", "set"]]
    assert [p[3] for p in pools] == list(POOLS)
    from airflow.dag_processing.dagbag import DagBag
    dag_pools = {t.pool for d in DagBag(dag_folder=str(ROOT / "dags")).dags.values() for t in d.tasks}
    assert dag_pools - {"default_pool"} == set(POOLS)  # every pool a DAG uses is created, and only those
    settings = load_settings(environment("airflow-init"))
    for (pool, (attribute, _)), call in zip(POOLS.items(), pools):
        assert int(call[4]) == getattr(settings, attribute) >= 1
    vigil_calls = [c[1:] for c in calls if c[0] == "vigil"]
    assert vigil_calls == [["init", "--roles"]]
    parser = build_parser()
    for argv in vigil_calls:
        try:
            parsed = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"`vigil {' '.join(argv)}` is not a vigil command")
        assert parsed.command == "init" and parsed.roles is True


# ----------------------------------------------------------------------------- databases and settings

def test_metadata_and_warehouse_are_different_databases_on_the_one_server(airflow_probe):
    worker = environment("airflow-worker")
    metadata = make_url(worker["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    backend = make_url(worker["AIRFLOW__CELERY__RESULT_BACKEND"].removeprefix("db+"))
    warehouse = make_url(airflow_probe["warehouse_url"])  # resolved by Vigil from the Airflow connection
    owner = make_url(load_settings(environment("airflow-init")).warehouse_url)
    assert metadata.host == backend.host == warehouse.host == owner.host == "postgres"
    assert metadata.database == backend.database == "airflow"
    assert warehouse.database == owner.database == "vigil" != metadata.database
    assert warehouse.username != owner.username, "the workers must not log in as the schema owner"

    init = (POSTGRES_INIT / "01-databases.sh").read_text()
    owners = dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", init))
    assert owners.get("airflow") == metadata.username and owners.get("vigil") == owner.username
    groups = set(re.findall(r"'(vigil_\w+)'", (ROOT / "sql" / "roles" / "roles.sql").read_text()))
    assert {"vigil_pipeline", "vigil_bi_reader"} <= groups
    assert re.search(rf"CREATE ROLE {warehouse.username} LOGIN .* IN ROLE vigil_pipeline;", init)
    assert re.search(r"CREATE ROLE vigil_bi LOGIN .* IN ROLE vigil_bi_reader;", init)
    metabase = environment(BI_SERVICE)
    assert owners.get(metabase["MB_DB_DBNAME"]) == metabase["MB_DB_USER"]
    for database in owners:
        assert f"REVOKE ALL ON DATABASE {database} FROM PUBLIC" in init


def test_postgres_init_scripts_get_what_they_read():
    scripts = sorted(POSTGRES_INIT.iterdir())
    assert scripts and all(p.suffix in (".sh", ".sql", ".gz") for p in scripts)
    env = environment("postgres")
    for script in scripts:
        if script.suffix == ".sh":
            result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            read = set(re.findall(r"\$\{(\w+)\}", script.read_text()))
            assert read <= set(env), f"{script.name} reads {read - set(env)}, which postgres is not given"
    mounts = [v for v in services()["postgres"]["volumes"] if v.split(":")[1] == "/docker-entrypoint-initdb.d"]
    assert mounts and (ROOT / mounts[0].split(":")[0]).resolve() == POSTGRES_INIT


def test_every_vigil_variable_is_one_vigil_reads():
    names, prefixes = config_variables()
    assert {"VIGIL_HOME", "VIGIL_DEVICE", "VIGIL_WAREHOUSE_URL"} <= names  # the AST walk finds them at all
    set_in_images = {name: "Dockerfile" for name in dockerfile_env() if name.startswith("VIGIL_")}
    for service in services():
        set_in_images.update({n: service for n in environment(service) if n.startswith("VIGIL_")})
    unknown = {n: where for n, where in set_in_images.items()
               if n not in names and not any(n.startswith(p) for p in prefixes)}
    assert not unknown, f"pipeline/config.py reads none of {unknown}"


def test_the_settings_point_where_the_volumes_are():
    image_env = dockerfile_env()
    for service in AIRFLOW_SERVICES:
        env = environment(service)
        for name in set(env) & set(image_env):
            assert env[name] == image_env[name], f"{service} and the Dockerfile disagree on {name}"
        settings = load_settings({k: v for k, v in env.items() if k != "VIGIL_WAREHOUSE_CONN_ID"})
        targets = {v.split(":")[1] for v in services()[service]["volumes"]}
        if service in ("airflow-init", "airflow-worker", "airflow-worker-gpu"):
            for path in (settings.home, settings.filestore, settings.models_dir):
                assert str(path) in targets, f"{service}: {path} is not on a volume"
        assert f"{image_env['AIRFLOW_HOME']}/logs" in targets, f"{service}: task logs are not on a volume"
    if conn_id := environment("airflow-worker").get("VIGIL_WAREHOUSE_CONN_ID"):
        assert environment("airflow-worker").get(f"AIRFLOW_CONN_{conn_id.upper()}"), \
            f"no Airflow connection {conn_id} for the workers"

    def home_volume(service):
        settings = load_settings({k: v for k, v in environment(service).items() if k != "VIGIL_WAREHOUSE_CONN_ID"})
        return {v.split(":")[0] for v in services()[service]["volumes"] if v.split(":")[1] == str(settings.home)}

    shared = home_volume("airflow-worker") & home_volume("airflow-worker-gpu")
    assert shared, "the workers exchange a night's files under VIGIL_HOME: they need the same volume"


def test_named_volumes_are_declared_and_used():
    declared = set(compose().get("volumes") or {})
    used = set()
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source and not source.startswith((".", "/", "~")):
                used.add(source)
                assert source in declared, f"{name} mounts undeclared volume {source}"
    assert used == declared, f"declared but unused: {declared - used}"
    assert {"postgres-data", "airflow-logs", "vigil-home", "vigil-files"} <= declared


def test_the_bi_service_is_optional_and_reads_no_secret_it_does_not_need():
    bi = services()[BI_SERVICE]
    assert bi.get("profiles") == ["bi"]
    assert not any(k.startswith(("AIRFLOW", "VIGIL")) for k in environment(BI_SERVICE))


def test_depends_on_names_real_services_with_sound_conditions():
    graph = {}
    for name, service in services().items():
        depends = service.get("depends_on", {})
        depends = {d: {"condition": "service_started"} for d in depends} if isinstance(depends, list) else depends
        graph[name] = set(depends)
        for target, spec in depends.items():
            assert target in services(), f"{name} depends on unknown service {target}"
            condition = spec.get("condition", "service_started")
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert "healthcheck" in services()[target], f"{name} waits for {target} to be healthy: it has no check"
            if condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name} waits for long-running {target} to exit"
    for service in AIRFLOW_SERVICES:
        conditions = {t: s["condition"] for t, s in services()[service]["depends_on"].items()}
        assert conditions["postgres"] == conditions["redis"] == "service_healthy"
        if service not in ONE_SHOT:
            assert conditions["airflow-init"] == "service_completed_successfully"
    for worker in ("airflow-worker", "airflow-worker-gpu"):
        assert services()[worker]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {n for n, deps in graph.items() if n not in done and deps <= done}
        assert ready, f"depends_on cycle among {set(graph) - done}"
        done |= ready


# ----------------------------------------------------------------------------- files and image

def test_every_file_the_deployment_references_exists():
    for name, service in services().items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile_name = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile_name).is_file(), f"{name}: no {dockerfile_name} in {context}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        for env_file in service.get("env_file", []):
            entry = {"path": env_file} if isinstance(env_file, str) else env_file
            if entry.get("required", True):
                assert (ROOT / entry["path"]).is_file(), f"{name} requires missing {entry['path']}"
            assert dockerignored(entry["path"]), f"{entry['path']} (settings) must stay out of the image"
    for sources, destination in dockerfile_copies():
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"
    for secret_or_bulk in (".env", ".git", ".venv", "data", "tests/__pycache__"):
        assert dockerignored(secret_or_bulk), f"{secret_or_bulk} is sent into the build context"


def test_the_image_holds_the_project_where_the_settings_say():
    copied = {sources[0].rstrip("/"): destination for sources, destination in dockerfile_copies()}
    env = environment("airflow-worker")
    assert copied["dags"] == env["AIRFLOW__CORE__DAGS_FOLDER"]
    assert copied["plugins"] == env["AIRFLOW__CORE__PLUGINS_FOLDER"]
    assert copied["models"] == env["VIGIL_MODELS_DIR"]
    project = PurePosixPath(copied["pipeline"]).parent
    for folder in ("dags", "sql", "models"):  # pipeline.config.PROJECT_ROOT is the pipeline package's parent
        assert PurePosixPath(copied[folder]).parent == project, f"{folder}/ is not beside pipeline/ in the image"
    project_files = {s for sources, d in dockerfile_copies() for s in sources if PurePosixPath(d) == project}
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("readme")
    assert {"pyproject.toml", readme} - {None} <= project_files, "the package metadata needs these to build"
    runs = " ".join(args for instruction, args in dockerfile() if instruction == "RUN")
    assert "pip install --no-deps -e ." in runs, "an editable install keeps PROJECT_ROOT at the copied project"
    entrypoint = json.loads(next(args for i, args in dockerfile() if i == "ENTRYPOINT"))
    entry_copies = {d: s for sources, d in dockerfile_copies() for s in sources}
    assert entry_copies.get(entrypoint[-1]) == "docker/entrypoint.sh"
    assert entrypoint[0] != "/usr/bin/tini" or re.search(r"apt-get install[^&]*\btini\b", runs)
    assert os.access(ENTRYPOINT, os.X_OK) and subprocess.run(["bash", "-n", str(ENTRYPOINT)]).returncode == 0
    user = next(args for i, args in reversed(dockerfile()) if i == "USER")
    assert user not in ("root", "0"), "the services must not run as root"


def test_the_image_installs_the_lock_on_the_supported_python():
    base = next(args for instruction, args in dockerfile() if instruction == "FROM")
    python = re.fullmatch(r"python:(\d+\.\d+)-slim", base)
    assert python, f"base image {base}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f">={python[1]}" in requires.replace(" ", ""), f"{base} vs requires-python {requires}"
    runs = [args for instruction, args in dockerfile() if instruction == "RUN"]
    assert any("-r requirements.lock" in r for r in runs)
    assert re.search(r"^torch==\S+$", (ROOT / "requirements.lock").read_text(), re.M), "torch is not pinned"
    assert "torch==" not in DOCKERFILE.read_text(), "the torch version comes from requirements.lock only"


# ----------------------------------------------------------------------------- .env.example

def test_env_example_lists_exactly_the_variables_the_compose_file_reads():
    read, listed = set(referenced_variables()), set(env_example())
    assert read - listed == set(), f"read but not in .env.example: {read - listed}"
    assert listed - read == set(), f"in .env.example but never read: {listed - read}"


def test_secrets_have_no_default_and_must_be_set():
    variables = referenced_variables()
    secrets = {name for name in variables if SECRET.search(name)}
    assert {"POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET"} <= secrets
    for name in secrets:
        assert env_example()[name] == "", f".env.example ships a value for {name}"
        assert variables[name] <= {":?"}, f"{name} is read without `:?` (Compose would start without it)"
    with pytest.raises(ValueError, match="required variable"):
        _walk_strings(raw_compose(), lambda s: interpolate(s, env_example()))
