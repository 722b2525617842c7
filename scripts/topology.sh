#!/usr/bin/env bash
# The docker-compose topology on this machine's real services, without Docker: Airflow
# scheduler, dag-processor and API server on the CeleryExecutor (local Redis broker, PostgreSQL
# metadata) plus two Celery workers (queues default and gpu); triggers the nightly DAG for
# --night through the REST API, waits for it, shows which worker ran each task, stops them all.
#   VIGIL_HOME=.vigil bash scripts/topology.sh --night 2026-03-01     (after scripts/demo.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pipeline.topology "$@"
