#!/usr/bin/env bash
# Entry point of the Vigil image. As in the official Airflow image, the arguments are an Airflow
# command (`api-server`, `scheduler`, `celery worker --queues gpu`, ...) unless they start with
# one of the programs below (`vigil top`, `bash -c ...`), which then runs as given.
set -euo pipefail

case "${1:-}" in
  airflow | vigil | bash | python | python3)
    exec "$@"
    ;;
  *)
    exec airflow "$@"
    ;;
esac
