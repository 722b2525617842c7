#!/usr/bin/env bash
# Benchmarks (not part of the test suite): `bash scripts/bench.sh features [--quick]`.
# Each prints a table with PASS/FAIL per target and writes benchmarks/results/<name>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
name="${1:-features}"
shift || true
exec .venv/bin/python -W ignore "benchmarks/${name}.py" "$@"
