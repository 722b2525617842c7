"""Fault injection: a night disturbed at its worst moments, then retried as Airflow would.

Each test takes a copy of the trained home, remembers everything the undisturbed last night
published, takes that night back out, and runs it again with one real fault: the publishing
process killed with SIGKILL inside its transaction, the database connection terminated by the
server during extract and during publish, the embedding worker killed mid-batch, the disk
full (a file-size limit) and the run folder not a directory. Until the retry nothing of the
night may be visible and the watermarks may not move; after the retry (the failed task again,
then its downstream tasks) the warehouse must equal the undisturbed result exactly: no row lost,
none duplicated.
"""

from __future__ import annotations

import shutil
import signal
import time

import pytest
from pandas.errors import DatabaseError
from sqlalchemy import event, exc, text

from pipeline.nightly import STAGES, run_night
from pipeline.stages.context import night_context
from pipeline.store.run_folder import RunFolderError
from tests.conftest import E2E_NIGHTS
from tests.state import dump, night_rows, run_child, unpublish

pytestmark = pytest.mark.slow
NIGHT = E2E_NIGHTS[1]


def stages_before(stage: str) -> tuple[str, ...]:
    return STAGES[:STAGES.index(stage)]


def stages_from(stage: str) -> tuple[str, ...]:
    return STAGES[STAGES.index(stage):]


def unpublished(clone) -> dict[str, str]:
    """The undisturbed result, then the night taken back out (nothing of it left)."""
    wh = clone["warehouse"]
    expected = dump(wh)
    unpublish(wh, NIGHT)
    assert set(night_rows(wh, NIGHT).values()) == {0}
    return expected


def assert_nothing_published(wh) -> None:
    counts = night_rows(wh, NIGHT)
    assert set(counts.values()) == {0}, f"a failed night left rows behind: {counts}"


def assert_killed_then_retried(child, wh, settings, stage: str, expected: dict[str, str]) -> None:
    """The child running ``stage`` died of SIGKILL, left nothing of the night, and the retry of
    ``stage`` and its downstream stages publishes exactly the undisturbed result."""
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert_nothing_published(wh)
    run_night(NIGHT, settings, stages=stages_from(stage))
    assert dump(wh) == expected


def test_publish_killed_inside_its_transaction_then_retried(cloned):
    wh, settings = cloned["warehouse"], cloned["settings"]
    expected = unpublished(cloned)
    run_night(NIGHT, settings, stages=stages_before("publish"))
    child = run_child(settings, f"""
        import os, signal
        from pipeline.stages.publish import publish_stage
        from pipeline.store.warehouse import Warehouse

        insert = Warehouse.bulk_insert

        def insert_then_die(self, conn, table, frame):
            written = insert(self, conn, table, frame)
            if table == "vigil_features.stay_events":  # risk rows and features are in, nothing committed
                os.kill(os.getpid(), signal.SIGKILL)
            return written

        Warehouse.bulk_insert = insert_then_die
        publish_stage("{NIGHT}", SETTINGS)
    """)
    assert_killed_then_retried(child, wh, settings, "publish", expected)


def _terminate_on(engine, postgres_server, fragment: str) -> tuple[list[int], callable]:
    """Have the server terminate the connection that is about to run a statement containing
    ``fragment`` (the first time only), so the statement meets a dead connection. Returns the
    terminated backend pids and a function that removes the hook."""
    killed: list[int] = []

    def terminate(conn, cursor, statement, parameters, context, executemany):
        if fragment not in statement or killed:
            return
        pid = conn.connection.dbapi_connection.get_backend_pid()
        with postgres_server.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(100):  # until the backend is gone
                if not admin.execute(text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).first():
                    break
                time.sleep(0.05)
        killed.append(pid)

    event.listen(engine, "before_cursor_execute", terminate)
    return killed, lambda: event.remove(engine, "before_cursor_execute", terminate)


def test_columnar_read_connection_dropped_by_the_server_is_read_again(cloned_postgres, postgres_server):
    """Extraction reads the night's arrivals over ADBC; when the server drops that connection
    just before the labevents read, the read runs once more on a fresh one and the night is
    the same as an undisturbed one."""
    wh, settings = cloned_postgres["warehouse"], cloned_postgres["settings"]
    expected = unpublished(cloned_postgres)
    _, stage_warehouse = night_context(NIGHT, settings)
    cursor = stage_warehouse._adbc().cursor()
    cursor.execute("SELECT pg_backend_pid()")
    (pid,), = cursor.fetchall()
    cursor.close()
    read_arrow, killed = stage_warehouse.read_arrow, []

    def terminate_then_read(query, *args, **kwargs):
        if "FROM mimiciv_hosp.labevents" in query and not killed:
            with postgres_server.connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            killed.append(pid)
        return read_arrow(query, *args, **kwargs)

    stage_warehouse.read_arrow = terminate_then_read
    try:
        run_night(NIGHT, settings)
    finally:
        del stage_warehouse.read_arrow
    assert killed
    assert dump(wh) == expected


@pytest.mark.parametrize("stage, fragment", [
    ("publish", "DELETE FROM vigil_features.stay_events"),   # inside the publishing transaction
])
def test_connection_dropped_by_the_server_then_retried(cloned_postgres, postgres_server, stage, fragment):
    wh, settings = cloned_postgres["warehouse"], cloned_postgres["settings"]
    expected = unpublished(cloned_postgres)
    if stages_before(stage):
        run_night(NIGHT, settings, stages=stages_before(stage))
    _, stage_warehouse = night_context(NIGHT, settings)
    killed, remove = _terminate_on(stage_warehouse.engine, postgres_server, fragment)
    try:
        # SQLAlchemy's OperationalError, or pandas' DatabaseError around it for a read
        with pytest.raises((exc.DBAPIError, DatabaseError), match="closed the connection unexpectedly|terminat"):
            run_night(NIGHT, settings, stages=(stage,))
    finally:
        remove()
    assert killed
    assert_nothing_published(wh)
    run_night(NIGHT, settings, stages=stages_from(stage))  # the same process recovers its connections
    assert dump(wh) == expected


def test_embedding_worker_killed_mid_batch_then_retried(cloned):
    """The night starts with an empty embedding cache, so it embeds everything. The undisturbed
    result is that same night run from that same state: text vectors depend in their last bits
    on which notes share a batch, so the comparison is with an undisturbed night that embedded
    the same notes, not with the history (training, then nightly increments) that filled the
    cache before."""
    wh, settings = cloned["warehouse"], cloned["settings"]

    def empty_cache():
        with wh.begin() as conn:
            wh.execute(conn, "DELETE FROM vigil_features.embeddings")

    unpublished(cloned)
    empty_cache()
    run_night(NIGHT, settings)
    expected = dump(wh)
    unpublish(wh, NIGHT)
    empty_cache()
    run_night(NIGHT, settings, stages=stages_before("embed"))
    child = run_child(settings, f"""
        import os, signal
        from pipeline.embed.modalities import SignalEncoder
        from pipeline.stages.embed import embed_stage

        def die(self, arrays, device, batch_size=64):
            os.kill(os.getpid(), signal.SIGKILL)

        SignalEncoder.encode = die
        embed_stage("{NIGHT}", SETTINGS)
    """)
    assert_killed_then_retried(child, wh, settings, "embed", expected)
    assert wh.scalar("SELECT COUNT(*) FROM vigil_features.embeddings") > 0


def test_disk_full_while_writing_the_night_then_retried(cloned):
    wh, settings = cloned["warehouse"], cloned["settings"]
    expected = unpublished(cloned)
    child = run_child(settings, f"""
        import resource, signal
        from pipeline.stages.extract import extract_stage

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_384, resource.RLIM_INFINITY))
        extract_stage("{NIGHT}", SETTINGS)
    """)
    assert child.returncode == 1 and "RunFolderError" in child.stderr and "File too large" in child.stderr, \
        child.stderr[-2000:]
    assert_nothing_published(wh)
    run_night(NIGHT, settings)
    assert dump(wh) == expected


def test_run_folder_unwritable_then_fixed_and_retried(cloned):
    wh, settings = cloned["warehouse"], cloned["settings"]
    expected = unpublished(cloned)
    shutil.rmtree(settings.runs_dir)
    settings.runs_dir.write_text("a file where the run folders should be")
    with pytest.raises(RunFolderError, match="cannot create .*Not a directory"):
        run_night(NIGHT, settings)
    assert_nothing_published(wh)
    settings.runs_dir.unlink()
    run_night(NIGHT, settings)
    assert dump(wh) == expected
