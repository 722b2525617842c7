#!/usr/bin/env bash
# Creates .venv (Python 3.11) with the locked dependencies and Vigil installed in it.
# Re-running is cheap: nothing is installed when requirements.lock and pyproject.toml are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

python=""
for candidate in python3.11 python3 python; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    python=$candidate; break
  fi
done
if [ -z "$python" ]; then
  echo "Vigil needs Python 3.11 (python3.11 on PATH)." >&2
  exit 1
fi

stamp=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ -f .venv/.vigil-installed ] && [ "$(cat .venv/.vigil-installed)" = "$stamp" ]; then
  exit 0
fi
echo "Setting up .venv (first run: about 2-3 minutes, ~2.5 GB) ..."
"$python" -m venv .venv
pip_install() {  # quiet, minus the notices about local mirror folders that some hosts configure
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
pip_install -r requirements.lock
pip_install --no-deps --no-build-isolation -e .
echo "$stamp" > .venv/.vigil-installed
