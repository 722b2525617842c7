#!/usr/bin/env bash
# Dependency audit: pip-audit over the locked requirements (no install, no resolution). Fails on
# every known vulnerability, critical ones included, unless its ID is in scripts/audit-ignore.txt
# with a reason. Asks PyPI's vulnerability service first, then OSV's.
#   bash scripts/audit.sh [REQUIREMENTS]          default: requirements.lock
# Exit 0: every package audited, nothing found. 1: vulnerabilities found (or a bad ignore list).
# 2: no service could audit every package (unreachable, or no answer for some package); with
# VIGIL_AUDIT_ALLOW_UNAVAILABLE=1 that case prints a warning and exits 0 instead.
set -euo pipefail
req=$(realpath -- "${1:-$(dirname "$0")/../requirements.lock}")
cd "$(dirname "$0")/.."

pip_audit_version=2.10.1
venv=.audit-venv
services=(pypi osv)

unavailable() {  # no audit could be done: fail, or warn when the switch is set
  echo "dependency audit: NOT PERFORMED for $req" >&2
  printf '  %s\n' "$@" >&2
  if [ "${VIGIL_AUDIT_ALLOW_UNAVAILABLE:-0}" = 1 ]; then
    echo "dependency audit: VIGIL_AUDIT_ALLOW_UNAVAILABLE=1, continuing WITHOUT an audit" >&2
    exit 0
  fi
  echo "dependency audit: failing; set VIGIL_AUDIT_ALLOW_UNAVAILABLE=1 to continue without it" >&2
  exit 2
}

[ -f "$req" ] || { echo "dependency audit: no such file: $req" >&2; exit 1; }

ignores=()
while IFS= read -r line || [ -n "$line" ]; do
  read -r id extra <<<"${line%%#*}" || true
  [ -z "${id:-}" ] && continue
  reason=${line#*#}
  if [ -n "${extra:-}" ] || [[ "$line" != *"#"* ]] || [ -z "${reason// /}" ]; then
    echo "dependency audit: scripts/audit-ignore.txt: want 'ID  # reason', got: $line" >&2
    exit 1
  fi
  ignores+=(--ignore-vuln "$id")
done < scripts/audit-ignore.txt

if [ "$(cat "$venv/.installed" 2>/dev/null)" != "pip-audit==$pip_audit_version" ]; then
  rm -rf "$venv"
  python=$(command -v python3.11 || command -v python3)
  if ! { "$python" -m venv "$venv" &&
         "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
           "pip-audit==$pip_audit_version" 2> >(grep -v "is ignored: it is neither" >&2); }; then
    unavailable "pip-audit==$pip_audit_version could not be installed"
  fi
  echo "pip-audit==$pip_audit_version" > "$venv/.installed"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
reasons=()
for service in "${services[@]}"; do
  rm -f "$tmp/report.json"
  pa_rc=0
  timeout 60 "$venv/bin/pip-audit" --requirement "$req" --no-deps --disable-pip \
    --vulnerability-service "$service" --timeout 10 --progress-spinner off \
    --format json --output "$tmp/report.json" --desc off --aliases on \
    ${ignores[@]+"${ignores[@]}"} >"$tmp/log" 2>&1 || pa_rc=$?
  # 0: clean; 1: vulnerabilities (printed); 3: this service could not audit every package.
  rc=0
  "$venv/bin/python" - "$tmp/report.json" "$service" "$req" "$(( ${#ignores[@]} / 2 ))" >"$tmp/verdict" <<'EOF' || rc=$?
import json, sys
path, service, req, n_ignored = sys.argv[1:]
try:
    deps = json.load(open(path))["dependencies"]
except (OSError, ValueError, KeyError):
    print(f"{service}: no report"); sys.exit(3)
vulnerable = [(d, v) for d in deps for v in d.get("vulns", [])]
skipped = [d for d in deps if "skip_reason" in d]
if vulnerable:
    print(f"dependency audit: {len(vulnerable)} known vulnerabilities in {req} (service: {service}):")
    for d, v in vulnerable:
        print(f"  {d['name']}=={d['version']}  {v['id']}  {' '.join(v['aliases'])}"
              f"  fixed in: {', '.join(v['fix_versions']) or 'no release yet'}")
    print("Upgrade the package in requirements.lock, or, once reviewed as not applicable, add the ID"
          " with a reason to scripts/audit-ignore.txt.")
    sys.exit(1)
if skipped:
    print(f"{service}: could not audit {len(skipped)} of {len(deps)} packages,"
          f" e.g. {skipped[0]['skip_reason']}")
    sys.exit(3)
print(f"dependency audit: {len(deps)} packages in {req}, no known vulnerabilities"
      f" (service: {service}; IDs let through by scripts/audit-ignore.txt: {n_ignored})")
EOF
  case $rc in
    0) cat "$tmp/verdict"; exit 0 ;;
    1) cat "$tmp/verdict"; exit 1 ;;
    3) if [ "$pa_rc" = 124 ]; then
         reasons+=("$service: no answer within 60 s")
       elif grep -q "no report" "$tmp/verdict"; then
         reasons+=("$service: $(grep -v -e '^WARNING' -e '^ERROR:pip_audit._cli:' "$tmp/log" | tail -n 1)")
       else
         reasons+=("$(cat "$tmp/verdict")")
       fi ;;
    *) cat "$tmp/verdict" "$tmp/log" >&2; exit 1 ;;
  esac
done
unavailable "${reasons[@]}"
