"""`vigil backfill`: nights in order through the same stages, published nights kept, resumable,
and a range run again changes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.backfill import backfill
from pipeline.cli import main
from pipeline.store import runs
from tests.conftest import E2E_NIGHTS
from tests.state import dump, unpublish

pytestmark = pytest.mark.slow


def test_a_backfill_fills_the_gaps_in_order_resumes_and_changes_nothing_when_run_again(cloned_sqlite, capsys,
                                                                                      monkeypatch):
    wh, settings = cloned_sqlite["warehouse"], cloned_sqlite["settings"]
    monkeypatch.setenv("VIGIL_HOME", str(settings.home))
    monkeypatch.setenv("VIGIL_WAREHOUSE_URL", settings.warehouse_url)
    first, last = E2E_NIGHTS[0] - timedelta(days=2), E2E_NIGHTS[1]
    published = {night: runs.risk_rows_sha256(wh, night) for night in E2E_NIGHTS}

    assert main(["backfill", "--start", first.isoformat(), "--end", last.isoformat()]) == 0
    out = capsys.readouterr().out
    assert f"night {first}: published" in out and f"night {E2E_NIGHTS[1]}: already published" in out
    assert "2 night(s) run, 2 already published" in out
    assert {n: runs.risk_rows_sha256(wh, n) for n in E2E_NIGHTS} == published  # kept, not published again
    nights = wh.read("SELECT night, risk_rows FROM vigil_audit.runs ORDER BY night", times=())
    assert [str(n)[:10] for n in nights["night"]] == [str(first + timedelta(days=i)) for i in range(4)]
    assert (nights["risk_rows"] > 0).all()

    state = dump(wh)
    again = backfill(first, last, settings)
    assert [n["status"] for n in again] == ["already published"] * 4 and dump(wh) == state

    # a backfill that stopped part way (night 2 never published) is resumed by the same command
    unpublish(wh, first + timedelta(days=1))
    resumed = backfill(first, last, settings)
    assert [n["status"] for n in resumed] == ["already published", "published", "already published",
                                              "already published"]
    assert dump(wh) == state

    # --rescore runs a published night again: its rows are replaced by the same rows, never doubled
    rescored = backfill(last, last, settings, rescore=True)
    assert rescored[0]["status"] == "published" and rescored[0]["risk_rows_sha256"] == published[last]
    assert dump(wh) == state


def test_a_backfill_refuses_a_night_not_yet_over_and_a_reversed_range(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    today = datetime.now(timezone.utc).date()
    assert main(["backfill", "--start", (today - timedelta(days=3)).isoformat(), "--end", today.isoformat()]) != 0
    assert "is not over until" in capsys.readouterr().err
    assert main(["backfill", "--start", "2026-01-05", "--end", "2026-01-01"]) != 0
    assert "ends (2026-01-01) before it starts (2026-01-05)" in capsys.readouterr().err
