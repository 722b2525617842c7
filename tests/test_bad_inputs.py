"""The bad-input corpus (tests/corpus/bad_inputs.py) through a real night, on SQLite and PostgreSQL.

Every case's rows and files are planted in a copy of the trained home as arrivals of its last
night; the night is re-run. It must complete, every case must be quarantined or excluded with
its reason (stored in the warehouse, not just logged) or used as its case says, the healthy stays
hosting the cases must be scored, the run's row accounting must close, and no reason or report
may quote a planted path. Cases a backend's column types cannot hold (text that is not UTF-8 on
PostgreSQL) run on SQLite only.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from pipeline.modeling import registry
from pipeline.nightly import run_night
from pipeline.stages.context import run_folder
from tests.conftest import E2E_NIGHTS
from tests.corpus.bad_inputs import CASES, HOSTILE_CASES, MAX_FILE_MB, PHI_FOLDER, STAY0, plant

pytestmark = pytest.mark.slow


def test_the_corpus_has_at_least_sixty_hostile_refusals_on_each_backend():
    for backend in ("sqlite", "postgres"):  # a case a backend cannot hold does not count for it
        refused = [c for c in HOSTILE_CASES if backend in c.backends and c.outcome != "used"]
        assert len(refused) >= 60, (backend, len(refused))
    assert len(CASES) >= 50 + 60
    assert len({c.name for c in CASES}) == len(CASES)
    assert {c.table for c in CASES} == {"cohort", "events", "notes", "ecgs", "images"}
    assert {c.outcome for c in CASES} == {"quarantined", "excluded", "used"}


def test_every_bad_input_is_quarantined_or_excluded_with_its_reason_and_the_night_completes(cloned):
    wh, night = cloned["warehouse"], E2E_NIGHTS[1]
    # the corpus puts many bad records into a small night: the failure-rate brake is not under test
    settings = dataclasses.replace(cloned["settings"], max_failure_rate=1.0, max_file_mb=MAX_FILE_MB)
    backend = "sqlite" if settings.is_sqlite else "postgres"
    promoted = registry.promoted(wh, "icu_mortality")
    assert set(registry.load_bundle(promoted["artifact_uri"], settings.home).inputs) >= {"notes", "ecg", "images"}, \
        "the corpus needs a promoted model that reads every modality, so every file is decoded"

    corpus, expected = plant(datetime.combine(night, datetime.min.time()), settings.filestore, backend)
    corpus.write(wh)

    result = run_night(night, settings)

    run_id = result["extract"]["run_id"]
    quarantine = wh.read("SELECT source_table, record_id, reason FROM vigil_audit.quarantine WHERE night = :n",
                         {"n": night})
    exclusions = wh.read("SELECT source_table, record_id, reason FROM vigil_audit.exclusions WHERE night = :n",
                         {"n": night})
    stored = wh.read("SELECT modality, record_id FROM vigil_features.stay_records WHERE ingest_night = :n",
                     {"n": night})
    found = {"quarantined": quarantine, "excluded": exclusions}
    missing = []
    for case in (c for c in CASES if backend in c.backends):
        for record_id in expected[case.name]:
            if case.outcome == "used":
                refused = quarantine[(quarantine["source_table"] == case.table) & (quarantine["record_id"] == record_id)]
                if record_id not in set(stored["record_id"]) or len(refused):
                    missing.append(f"{case.name}: {case.table} {record_id} not used ({sorted(refused['reason'])})")
                continue
            rows = found[case.outcome]
            hits = rows[(rows["source_table"] == case.table) & (rows["record_id"] == record_id)]
            if not hits["reason"].str.contains(case.reason, regex=False).any():
                missing.append(f"{case.name}: {case.table} {record_id} not {case.outcome} for '{case.reason}' "
                               f"(recorded: {sorted(hits['reason'])})")
    assert not missing, "\n".join(missing)

    # reasons and the report name the failure and the record, never a path or a note's text
    report = (run_folder(night, settings) / "report" / "report.json").read_text()
    planted_paths = [r["path"] for t in ("mimiciv_ecg.record_list", "mimiciv_cxr.record_list")
                     for r in corpus.rows[t] if r["path"] and len(r["path"].strip()) > 3]
    said = "\n".join([*quarantine["reason"], *exclusions["reason"], report])
    assert PHI_FOLDER not in said and not [p for p in planted_paths if p in said]
    note_texts = [r["text"] for t in ("mimiciv_note.radiology", "mimiciv_note.discharge") for r in corpus.rows[t]
                  if isinstance(r["text"], str) and len(r["text"].strip()) >= 12]
    assert note_texts and not [t for t in note_texts if t.strip()[:40] in said]

    counts = wh.read("SELECT * FROM vigil_audit.run_counts WHERE run_id = :r", {"r": run_id})
    assert len(counts) == 5
    assert (counts["records_in"] == counts["used"] + counts["quarantined"] + counts["excluded"]).all()
    assert (counts["quarantined"] > 0).all() and (counts["excluded"] > 0).all()

    # the healthy hosts of the cases are scored; the stay with no data is listed, not scored
    risk = wh.read("SELECT stay_id FROM vigil_risk.risk_scores WHERE night = :n", {"n": night})
    corpus_scored = set(risk["stay_id"][(risk["stay_id"] >= STAY0) & (risk["stay_id"] < STAY0 + 1000)])
    hosts = {int(r["stay_id"]) for r in corpus.rows["mimiciv_icu.icustays"]}
    bad_stays = set(quarantine.loc[quarantine["source_table"] == "cohort", "record_id"].astype(int)) | \
        set(exclusions.loc[exclusions["source_table"] == "cohort", "record_id"].astype(int))
    assert corpus_scored == hosts - bad_stays and len(corpus_scored) >= 50
    run = wh.read("SELECT stays_active, stays_scored, stays_unscored FROM vigil_audit.runs WHERE run_id = :r",
                  {"r": run_id}).iloc[0]
    assert run["stays_active"] == run["stays_scored"] and run["stays_unscored"] >= 1
