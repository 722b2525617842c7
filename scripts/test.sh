#!/usr/bin/env bash
# The test suite: unit tests, PostgreSQL integration tests (local server at 127.0.0.1:5432),
# the real public data in ../shared/data when present, DAG tests and the end-to-end run.
# Extra arguments go to pytest (e.g. -k features, -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
