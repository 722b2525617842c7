#!/usr/bin/env bash
# The test suite: unit tests, PostgreSQL integration tests (local server at 127.0.0.1:5432),
# the real public data in ../shared/data when present, DAG tests and the end-to-end run.
# Extra arguments go to pytest (e.g. -k features, -m "not slow").
# Test files run in VIGIL_TEST_WORKERS processes (default 2; pytest-xdist), each file whole in
# one of them, so a file's module fixtures are built once; 0 runs everything in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
workers=${VIGIL_TEST_WORKERS:-2}
parallel=()
if [ "$workers" != "0" ]; then
  parallel=(-n "$workers" --dist loadfile)
fi
exec .venv/bin/python -m pytest "${parallel[@]}" "$@"
