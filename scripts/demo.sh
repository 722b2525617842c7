#!/usr/bin/env bash
# The main job on the embedded default: SQLite warehouse + local file store in ./.vigil.
# Builds a synthetic multimodal cohort, trains the models, runs two nights through Airflow
# and prints the top-risk patients. Extra arguments go to `vigil demo` (e.g. --stays 500).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export VIGIL_HOME="${VIGIL_HOME:-$PWD/.vigil}"
exec .venv/bin/vigil demo "$@"
