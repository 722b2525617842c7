"""The README's operator round (the ```bash block after "An operator's round") runs as pasted, in
a shell, command by command, from the repository root, on a scratch home."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def runbook() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"An operator's round.*?```bash\n(.*?)```", text, flags=re.S)
    assert block, "the README lost its operator's round"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_operators_round_runs_as_pasted(tmp_path):
    commands = runbook()
    assert len(commands) >= 10 and commands[0].startswith("export VIGIL_HOME=")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIL_", "AIRFLOW"))}
    env.update({"TMPDIR": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    script = "set -euo pipefail\n" + "".join(f"echo '@@ {n}'\n{c}\n" for n, c in enumerate(commands))
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400)
    outputs = re.split(r"^@@ \d+$\n?", result.stdout, flags=re.M)[1:]  # one shell, one output per command
    assert result.returncode == 0, f"README command {len(outputs) - 1} failed: {commands[len(outputs) - 1]}\n" \
                                   f"{outputs[-1][-2000:]}\n{result.stderr[-3000:]}"
    assert len(outputs) == len(commands)
    runs = outputs[-1].split()
    assert runs[:2] == ["night", "run_id"] and "2026-01-19" in runs and "2026-01-20" in runs
    assert any(word.startswith("manual__") for word in runs)  # the night Airflow ran is audited too
