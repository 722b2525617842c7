"""Security: SQL is parameterised everywhere (checked in the source, and by feeding hostile
strings through notes, codes, free-text fields and configuration); the warehouse password comes
from an Airflow connection and never reaches a log or a file; no patient's name or note text
reaches a task log."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from pipeline.nightly import run_night
from pipeline.stages.context import run_folder
from tests.conftest import E2E_NIGHTS, ROOT
from tests.corpus.bad_inputs import Corpus

NIGHT = E2E_NIGHTS[1]
SQL_VERB = re.compile(r"^\s*(SELECT|INSERT|DELETE|UPDATE|CREATE|DROP|ATTACH|COPY|ALTER|GRANT|REVOKE|WITH)\b", re.I)
# What SQL text may be assembled from: names of tables, columns and schemas chosen by the code,
# and fixed fragments; never a value (values are bound parameters).
IDENTIFIER_EXPRESSIONS = {
    "qualified", "table", "schema", "column", "key", "store", "where", "extra", "cast", "window",
    "placeholders", "', '.join(columns)", "definition", "database",
}
HOSTILE = [
    "'); DROP TABLE vigil_risk.risk_scores; --",
    "x' OR '1'='1",
    "Robert'); DELETE FROM mimiciv_hosp.patients WHERE ('a'='a",
    "\\'; SELECT pg_sleep(30); --",
    ":night :values %(until)s {0} $1 ?",
    "\u202eevil\u0000".replace("\u0000", ""),  # right-to-left override; PostgreSQL text cannot hold NUL
]


def test_sql_text_is_assembled_only_from_identifiers():
    found = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.JoinedStr):
                continue
            head = node.values[0].value if node.values and isinstance(node.values[0], ast.Constant) else ""
            if not SQL_VERB.match(head):
                continue
            for value in node.values:
                if isinstance(value, ast.FormattedValue):
                    found.append((path.relative_to(ROOT), node.lineno, ast.unparse(value.value)))
    assert found, "the scan found no SQL at all: it is broken"
    pasted = [f for f in found if f[2] not in IDENTIFIER_EXPRESSIONS]
    assert not pasted, f"values pasted into SQL text instead of bound: {pasted}"


def _plant_hostile(wh, settings) -> dict[str, str]:
    corpus = Corpus(night_start=datetime.combine(NIGHT, datetime.min.time()), filestore=settings.filestore)
    notes = {}
    for i, hostile in enumerate(HOSTILE):
        corpus.stay(500 + i)
        corpus.rows["mimiciv_icu.icustays"][-1]["first_careunit"] = hostile
        corpus.rows["mimiciv_hosp.admissions"][-1]["admission_type"] = hostile[:40]
        notes[corpus.note(500 + i, f"Radiology report. {hostile} End of report.",
                          note_id=f"h{i}-{hostile[:10]}")] = f"Radiology report. {hostile} End of report."
        corpus.lab(500 + i, 50983, None, hostile[:20], value=hostile[:200])
        corpus.chart(500 + i, 220045, 90.0, hostile[:20], at=corpus.night_start + timedelta(hours=8))
    corpus.write(wh)
    return notes


@pytest.mark.slow
def test_hostile_strings_in_notes_codes_and_fields_are_data_not_sql(cloned):
    wh, settings = cloned["warehouse"], cloned["settings"]
    tables = {s: sorted(inspect(wh.engine).get_table_names(schema=s)) for s in ("vigil_risk", "mimiciv_hosp")}
    notes = _plant_hostile(wh, settings)
    patients = wh.scalar("SELECT COUNT(*) FROM mimiciv_hosp.patients")
    run_night(NIGHT, settings)
    assert {s: sorted(inspect(wh.engine).get_table_names(schema=s)) for s in tables} == tables
    assert wh.scalar("SELECT COUNT(*) FROM mimiciv_hosp.patients") == patients
    stored = wh.read_in("SELECT record_id, text FROM vigil_features.stay_records WHERE record_id IN :values",
                        list(notes))
    assert dict(zip(stored["record_id"], stored["text"])) == notes  # byte for byte, ids included
    quarantined = wh.read("SELECT reason FROM vigil_audit.quarantine WHERE night = :n AND stay_id BETWEEN 9820500 AND 9820599",
                          {"n": NIGHT})
    assert set(quarantined["reason"]) >= {"value is empty or not numeric", "unit differs from the concept map's unit"}
    assert wh.scalar("SELECT COUNT(*) FROM vigil_risk.risk_scores WHERE night = :n AND stay_id BETWEEN 9820500 AND 9820599",
                     {"n": NIGHT}) == len(HOSTILE)


def test_hostile_characters_in_the_configured_paths(tmp_path):
    home = tmp_path / "it's; DROP TABLE x; -- \"home\""
    env = {**os.environ, "VIGIL_HOME": str(home), "VIGIL_DEVICE": "cpu"}
    env.pop("VIGIL_WAREHOUSE_URL", None)
    for args in (["init"], ["-q", "synth", "--stays", "30", "--days", "5"], ["check-data"]):
        result = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True,
                                text=True, timeout=600, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-2000:]
    assert (home / "warehouse" / "mimiciv_icu.db").exists()


PHI = {
    "name": "Eudora Quillfeather",
    "second name": "Thaddeus Wrenbottom",
    "record number": "MRN 48213977",
    "note phrase": "zebra-striped pancreatic cyst",
    "lab comment": "called to Dr Pemberton-Ashgrove",
}


@pytest.mark.slow
def test_no_phi_or_password_in_task_logs(cloned_postgres, tmp_path):
    """A night through Airflow (`dags test`: the task logs) and through `vigil --verbose run`
    (debug logging), with the warehouse password only in an Airflow connection, on data that
    holds known names and note text in notes, in quarantined values and in unit strings."""
    wh, settings = cloned_postgres["warehouse"], cloned_postgres["settings"]
    corpus = Corpus(night_start=datetime.combine(NIGHT, datetime.min.time()), filestore=settings.filestore)
    for i, secret in enumerate(PHI.values()):
        corpus.stay(600 + i)
        corpus.note(600 + i, f"Patient {PHI['name']} ({PHI['record number']}) seen with {secret}.")
        corpus.note(600 + i, "", note_id=f"empty-{i}")  # a quarantined note next to them
        corpus.lab(600 + i, 50983, None, "mEq/L", value=secret)  # quarantined: not numeric
        corpus.chart(600 + i, 220045, 80.0, secret[:20], at=corpus.night_start + timedelta(hours=8))
    corpus.write(wh)

    password = "Sup3r-Secret-Warehouse-Pw"  # trust authentication here accepts any password
    url = make_url(settings.warehouse_url)
    connection = {"conn_type": "postgres", "login": url.username, "password": password, "host": url.host,
                  "port": url.port, "schema": url.database}
    airflow_home = tmp_path / "airflow"
    env = {**os.environ, "VIGIL_HOME": str(settings.home), "VIGIL_DEVICE": "cpu", "HF_HUB_OFFLINE": "1",
           "VIGIL_WAREHOUSE_CONN_ID": "vigil_warehouse", "AIRFLOW_CONN_VIGIL_WAREHOUSE": json.dumps(connection),
           "AIRFLOW_HOME": str(airflow_home),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}"}
    env.pop("VIGIL_WAREHOUSE_URL", None)
    outputs = []
    for args in (["--verbose", "run", "--date", NIGHT.isoformat()],
                 ["airflow", "dags", "test", "vigil_nightly", NIGHT.isoformat()]):
        result = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True,
                                text=True, timeout=900, cwd=ROOT)
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        outputs.append(result.stdout + result.stderr)
    assert "state=success" in outputs[1]
    assert wh.scalar("SELECT COUNT(*) FROM vigil_features.stay_records WHERE text LIKE :t",
                     {"t": f"%{PHI['note phrase']}%"}) >= 1, "the notes were not ingested: the test proves nothing"
    logs = [p for folder in (airflow_home / "logs", settings.home / "logs") if folder.exists()
            for p in folder.rglob("*") if p.is_file()]
    texts = outputs + [p.read_text(errors="replace") for p in logs]
    texts.append((run_folder(NIGHT, settings) / "report" / "report.json").read_text())
    leaks = [(what, i) for i, text in enumerate(texts) for what, secret in {**PHI, "password": password}.items()
             if secret in text]
    assert not leaks, f"found in logs: {leaks}"
    assert sum(len(t) for t in texts) > 10_000  # the logs are real and verbose
