"""Idempotency and concurrency: ten re-runs of one night give byte-identical risk rows (and the
audit table records the same digest for each run); two nights running at once in separate
processes publish exactly what they publish one after the other."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest

from pipeline.nightly import STAGES, run_night
from pipeline.publish import risk_digest
from tests.conftest import E2E_NIGHTS
from tests.state import dump, night_rows, run_child, unpublish

pytestmark = pytest.mark.slow


def test_ten_reruns_of_a_night_are_byte_identical_and_audited(cloned):
    wh, settings, night = cloned["warehouse"], cloned["settings"], E2E_NIGHTS[1]
    expected = dump(wh)
    run_ids = []
    for attempt in range(10):
        run_ids.append(run_night(night, settings)["extract"]["run_id"])
        assert dump(wh) == expected, f"re-run {attempt + 1} changed the warehouse"
    assert len(set(run_ids)) == 10
    runs = wh.read("SELECT run_id, risk_rows, risk_rows_sha256 FROM vigil_audit.runs WHERE night = :n",
                   {"n": night})
    assert runs["run_id"].tolist() == [run_ids[-1]] and runs["risk_rows"].iloc[0] > 0  # one audit row: the last run
    counts = wh.read("SELECT DISTINCT run_id FROM vigil_audit.run_counts WHERE night = :n", {"n": night})
    assert counts["run_id"].tolist() == [run_ids[-1]]
    stored = wh.read("SELECT * FROM vigil_risk.risk_scores WHERE night = :n", {"n": night})
    assert risk_digest(stored) == runs["risk_rows_sha256"].iloc[0]  # the digest is of what is stored


def _audit(wh, night) -> str:
    """The night's audit rows, every column (a retry may not even touch published_at)."""
    runs = wh.read("SELECT * FROM vigil_audit.runs WHERE night = :n", {"n": night})
    counts = wh.read("SELECT * FROM vigil_audit.run_counts WHERE night = :n ORDER BY source_table", {"n": night})
    return runs.astype(str).to_csv(index=False) + counts.astype(str).to_csv(index=False)


def test_publish_retried_after_it_committed_leaves_the_same_state(cloned):
    """An Airflow retry or a cleared ``publish`` task runs publish again for a run whose publish
    already committed: nothing changes, not even the audit row's timestamps; report after it too."""
    wh, settings, night = cloned["warehouse"], cloned["settings"], E2E_NIGHTS[1]
    published = wh.read("SELECT run_id, risk_rows_sha256 FROM vigil_audit.runs WHERE night = :n", {"n": night})
    expected, audit = dump(wh), _audit(wh, night)
    for _ in range(2):
        again = run_night(night, settings, run_id=published["run_id"].iloc[0], stages=("publish", "report"))
        assert again["publish"]["risk_rows_sha256"] == published["risk_rows_sha256"].iloc[0]
        assert dump(wh) == expected and _audit(wh, night) == audit


def test_a_late_publish_of_an_older_run_never_overwrites_a_newer_runs_publish(cloned_sqlite):
    """Run A is held up before publishing; run B of the same night starts later and publishes;
    A's publish then finds the night published by a run that started after it and writes nothing."""
    wh, settings, night = cloned_sqlite["warehouse"], cloned_sqlite["settings"], E2E_NIGHTS[1]
    older = run_night(night, settings, stages=STAGES[:STAGES.index("publish")])["extract"]["run_id"]
    newer = run_night(night, settings)["extract"]["run_id"]
    expected, audit = dump(wh), _audit(wh, night)
    late = run_night(night, settings, run_id=older, stages=("publish",))
    assert late["publish"]["superseded_by"] == newer
    assert dump(wh) == expected and _audit(wh, night) == audit


def test_two_runs_of_one_night_at_once_leave_one_audit_row_and_the_same_state(cloned):
    """A manual re-run started while the scheduled run of the same night works: each run keeps
    its own folder, their publishes serialise, and the night ends with one audit row and exactly
    the state one run leaves."""
    wh, settings, night = cloned["warehouse"], cloned["settings"], E2E_NIGHTS[1]
    expected = dump(wh)
    code = ("import time\nfrom pipeline.nightly import STAGES, run_night\nprint('start', time.time())\n"
            "print('run', run_night('{night}', SETTINGS)['extract']['run_id'])\nprint('end', time.time())\n")
    with ThreadPoolExecutor(2) as pool:
        children = list(pool.map(lambda _: run_child(settings, code.format(night=night)), range(2)))
    spans, run_ids = [], []
    for child in children:
        assert child.returncode == 0, child.stderr[-3000:]
        marks = dict(line.split() for line in child.stdout.splitlines() if line.startswith(("start", "end", "run")))
        spans.append((float(marks["start"]), float(marks["end"])))
        run_ids.append(marks["run"])
    assert max(s for s, _ in spans) < min(e for _, e in spans), f"the runs did not overlap: {spans}"
    assert dump(wh) == expected
    runs = wh.read("SELECT run_id FROM vigil_audit.runs WHERE night = :n", {"n": night})
    assert len(runs) == 1 and runs["run_id"].iloc[0] in run_ids
    assert wh.read("SELECT DISTINCT run_id FROM vigil_audit.run_counts WHERE night = :n",
                   {"n": night})["run_id"].tolist() == runs["run_id"].tolist()


def test_two_nights_running_concurrently_publish_what_they_publish_in_turn(cloned_postgres):
    """Both nights are taken out and re-run at once, each in its own process. Whichever order
    their stages interleave in, the risk rows, the event and record stores, the stored features
    and the watermarks equal those of the nights run one after the other."""
    wh, settings = cloned_postgres["warehouse"], cloned_postgres["settings"]
    expected = dump(wh)
    for night in E2E_NIGHTS:
        unpublish(wh, night)
    code = ("import time\nfrom pipeline.nightly import STAGES, run_night\nprint('start', time.time())\n"
            "run_night('{night}', SETTINGS)\nprint('end', time.time())\n")
    with ThreadPoolExecutor(2) as pool:
        children = list(pool.map(lambda n: run_child(settings, code.format(night=n)), E2E_NIGHTS))
    spans = []
    for night, child in zip(E2E_NIGHTS, children):
        assert child.returncode == 0, f"night {night} failed:\n{child.stderr[-3000:]}"
        marks = dict(line.split() for line in child.stdout.splitlines() if line.startswith(("start", "end")))
        spans.append((float(marks["start"]), float(marks["end"])))
    assert max(s for s, _ in spans) < min(e for _, e in spans), f"the nights did not overlap: {spans}"
    published = dump(wh)
    for part in ("risk", "events", "records", "features", "watermarks"):
        assert published[part] == expected[part], part
    for night in E2E_NIGHTS:
        runs = wh.read("SELECT stays_active, stays_scored FROM vigil_audit.runs WHERE night = :n", {"n": night})
        assert len(runs) == 1 and (runs["stays_active"] == runs["stays_scored"]).all()
        assert night_rows(wh, night)["vigil_audit.watermarks"] == 4  # events, notes, ecgs, images


def test_a_repeated_night_runs_no_encoder_forward_pass(cloned, monkeypatch):
    """Everything the night embeds is already in the cache (same content, same encoder version):
    re-running it must not call a text, ECG or image encoder on a single record."""
    from pipeline.embed.modalities import SignalEncoder
    from pipeline.embed.text import TextEncoder

    calls = []
    for cls in (TextEncoder, SignalEncoder):
        original = cls.encode

        def counting(self, inputs, *args, _original=original, **kwargs):
            calls.append((type(self).__name__, len(inputs)))
            return _original(self, inputs, *args, **kwargs)

        monkeypatch.setattr(cls, "encode", counting)
    result = run_night(E2E_NIGHTS[1], cloned["settings"], stages=("extract", "validate", "features", "embed"))
    embedded = {k: v for k, v in result["embed"].items() if isinstance(v, dict)}
    assert {"icu_mortality.notes", "icu_mortality.ecg", "icu_mortality.images"} <= set(embedded)
    assert all(v["records"] > 0 for v in embedded.values())
    assert [v["newly_embedded"] for v in embedded.values()] == [0] * len(embedded)
    assert [c for c in calls if c[1] > 0] == []


def test_a_night_with_no_patient_in_the_icu_publishes_nothing_and_succeeds(cloned):
    """Weeks after the cohort's last discharge: nobody to score, every stage still completes
    (an empty stay list binds as no rows on PostgreSQL too) and the run is audited."""
    wh, settings = cloned["warehouse"], cloned["settings"]
    quiet = date(2026, 3, 15)
    result = run_night(quiet, settings)
    assert wh.scalar("SELECT COUNT(*) FROM vigil_risk.risk_scores WHERE night = :n", {"n": quiet}) == 0
    run = wh.read("SELECT stays_active, stays_scored, risk_rows FROM vigil_audit.runs WHERE night = :n", {"n": quiet})
    assert run[["stays_active", "stays_scored", "risk_rows"]].to_numpy().tolist() == [[0, 0, 0]]
    assert result["report"]["alerts"] == 0


def test_extract_run_again_keeps_the_later_stages_files_only_for_the_same_rows(cloned_sqlite):
    """``extract`` cleared alone: when it extracts the same rows for the same models, the stages
    not cleared with it keep their files (a publish cleared later finds a whole run); when a row
    arrived meanwhile, their files go, so nothing made from other rows is ever mixed in."""
    from datetime import datetime

    from pipeline.store.run_folder import RunFolder
    from tests.corpus.bad_inputs import Corpus

    wh, settings, night = cloned_sqlite["warehouse"], cloned_sqlite["settings"], E2E_NIGHTS[1]
    run_id = run_night(night, settings, stages=("extract", "validate", "features"))["extract"]["run_id"]
    folder = RunFolder(settings, night, run_id).folder
    run_night(night, settings, run_id=run_id, stages=("extract",))
    assert (folder / "features").is_dir() and (folder / "validate").is_dir()
    late = Corpus(night_start=datetime.combine(night, datetime.min.time()), filestore=settings.filestore)
    late.stay(0)  # a stay whose rows reach the warehouse after the first extraction
    late.write(wh)
    run_night(night, settings, run_id=run_id, stages=("extract",))
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["extract"]


def test_a_night_in_shards_publishes_what_the_unsharded_night_publishes(cloned):
    """``VIGIL_SHARDS=3``: features, embeddings and scores are computed per range of stays (as
    mapped tasks on several workers would) and publish gathers them in one transaction; with a
    small ``VIGIL_SHARD_ROWS`` the first night is also extracted and its events validated in
    parts of subjects. Both nights, the second incremental, leave the warehouse the unsharded
    nights left, with the same risk digest. A shard whose scores are missing stops publish
    before it writes anything; that shard alone run again, the night publishes."""
    import dataclasses

    from pipeline.stages.context import in_shard, read_shards, run_folder
    from pipeline.stages.score import score_stage
    from pipeline.store.run_folder import RunFolder

    wh, settings = cloned["warehouse"], dataclasses.replace(cloned["settings"], night_shards=3, shard_rows=4000)
    expected = dump(wh)

    def audit() -> dict[str, str]:
        frames = {t: wh.read(f"SELECT * FROM vigil_audit.{t}").drop(columns=["run_id"], errors="ignore")
                  for t in ("dq_results", "run_counts")}
        return {t: f.sort_values(list(f.columns), ignore_index=True).to_csv() for t, f in frames.items()}

    expected_audit = audit()
    digests = {n: wh.scalar("SELECT risk_rows_sha256 FROM vigil_audit.runs WHERE night = :n", {"n": n})
               for n in E2E_NIGHTS}
    for night in E2E_NIGHTS:
        unpublish(wh, night)
    results = {night: run_night(night, settings) for night in E2E_NIGHTS}
    assert dump(wh) == expected and audit() == expected_audit   # the expectations' counts summed over parts too
    assert results[E2E_NIGHTS[0]]["validate"]["parts"] >= 3
    for night, result in results.items():
        assert result["validate"]["shards"] == 3 and result["publish"]["risk_rows_sha256"] == digests[night]
        ctx = RunFolder(settings, night)
        assert len(ctx.parts("validate", "events")) == result["validate"]["parts"]
        active = ctx.read("validate", "active")
        sizes = [len(ctx.read("features", f"icu_mortality.shard-{k}")) for k in range(3)]
        assert sum(sizes) == len(active) and min(sizes) >= len(active) // 3  # every stay once, in even ranges
        risk = read_shards(ctx, "score", "risk.icu_mortality")
        for k in range(3):  # each shard scored the stays of its range, and only those
            assert in_shard(ctx, risk, k)["stay_id"].tolist() == \
                ctx.read("score", f"risk.icu_mortality.shard-{k}")["stay_id"].tolist()
        counts = result["features"]["icu_mortality"]  # the shards' summaries summed
        assert counts["recomputed"] + counts["carried_forward"] == result["features"]["active_stays"] == len(active)

    night = E2E_NIGHTS[1]
    unpublish(wh, night)
    partial = run_night(night, settings, stages=("extract", "validate", "features", "embed", "score"))
    lost = run_folder(night, settings, partial["extract"]["run_id"]) / "score" / "risk.icu_mortality.shard-1.parquet"
    lost.unlink()
    with pytest.raises(FileNotFoundError, match=r"icu_mortality \(shard 1\)"):
        run_night(night, settings, run_id=partial["extract"]["run_id"], stages=("publish",))
    assert set(night_rows(wh, night).values()) == {0}  # nothing of the night was written
    score_stage(night, settings, model="icu_mortality", run_id=partial["extract"]["run_id"], shard=1)
    again = run_night(night, settings, run_id=partial["extract"]["run_id"], stages=("publish", "report"))
    assert again["publish"]["risk_rows_sha256"] == digests[night] and dump(wh) == expected

    # the shards cut again (validate re-run with two) while the later stages' files are those of three:
    # publish refuses them rather than publish a night missing the stays that moved
    with pytest.raises(RuntimeError, match="another shard"):
        run_night(night, dataclasses.replace(settings, night_shards=2), run_id=partial["extract"]["run_id"],
                  stages=("validate", "publish"))
    assert dump(wh) == expected


def test_a_lab_row_id_shared_by_two_parts_of_subjects_is_quarantined_as_in_one_piece(cloned_sqlite):
    """A feed that gives two patients' lab results one ``labevent_id``, one of the two values
    impossible: a night extracted in parts of subjects, the two rows in different parts,
    quarantines both with the reason one suite over the whole night gives (the impossible one
    for both reasons), stores neither, reports the uniqueness expectation failed on both rows,
    and its row accounting closes."""
    import dataclasses

    import pandas as pd

    from pipeline.stages.validate import SHARED_ID

    wh, night = cloned_sqlite["warehouse"], E2E_NIGHTS[0]
    for n in E2E_NIGHTS:
        unpublish(wh, n)
    labs = wh.read("SELECT l.* FROM mimiciv_hosp.labevents l JOIN mimiciv_icu.icustays i "
                   "ON i.subject_id = l.subject_id "
                   "AND l.charttime > i.intime AND l.charttime < COALESCE(i.outtime, '9') "
                   "WHERE l.charttime < :t AND l.valuenum IS NOT NULL ORDER BY l.subject_id, l.labevent_id",
                   {"t": str(night)})
    pair = labs.iloc[[0, -1]].copy()
    assert pair["subject_id"].nunique() == 2
    later = pd.to_datetime(pair["charttime"]) + pd.Timedelta(minutes=1)   # not an exact duplicate of its original
    pair["charttime"] = later.dt.strftime("%Y-%m-%d %H:%M:%S")
    pair["storetime"] = (later + pd.Timedelta(minutes=5)).dt.strftime("%Y-%m-%d %H:%M:%S")
    pair["labevent_id"] = 990_000_001
    pair.iloc[1, pair.columns.get_loc("valuenum")] = -1e9   # below any possible range: quarantined in its part
    with wh.begin() as conn:
        wh.bulk_insert(conn, "mimiciv_hosp.labevents", pair)
    judged = {}
    for shard_rows, parts in ((2000, "several"), (0, "one")):
        settings = dataclasses.replace(cloned_sqlite["settings"], shard_rows=shard_rows)
        result = run_night(night, settings)
        assert (result["validate"]["parts"] > 2) == (parts == "several")
        quarantined = wh.read("SELECT stay_id, reason FROM vigil_audit.quarantine WHERE night = :n AND record_id = :r",
                              {"n": night, "r": "labevents/990000001"})
        assert quarantined.loc[quarantined["reason"] == SHARED_ID, "stay_id"].nunique() == 2, parts
        assert quarantined["reason"].nunique() == 2, parts   # the impossible value's reason too
        stored = "SELECT COUNT(*) FROM vigil_features.stay_events WHERE source_row_id = 'labevents/990000001'"
        assert wh.scalar(stored) == 0
        unique = wh.read("SELECT success, unexpected_count FROM vigil_audit.dq_results WHERE night = :n AND "
                         "expectation = 'expect_column_values_to_be_unique' AND column_name = 'source_row_id'",
                         {"n": night})
        judged[parts] = (bool(unique["success"].iloc[0]), int(unique["unexpected_count"].iloc[0]))
        unpublish(wh, night)
    assert judged["several"] == judged["one"] and judged["one"][0] is False and judged["one"][1] >= 2
