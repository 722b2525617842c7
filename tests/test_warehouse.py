"""The warehouse layer on both backends: schema, typed round trips, replacement, chunked deletes."""

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from pipeline.store.warehouse import SCHEMAS, iso, read_sql_file


def test_iso_text_sorts_like_time():
    times = [datetime(2026, 1, 1, 10), datetime(2026, 1, 1, 10, 0, 0, 500000), datetime(2026, 1, 1, 10, 0, 1),
             datetime(2025, 12, 31, 23, 59, 59, 999999)]
    assert sorted(times) == sorted(times, key=iso)


def test_every_ddl_statement_parses_into_statements():
    from pipeline.config import PROJECT_ROOT

    statements = [s for p in sorted((PROJECT_ROOT / "sql" / "schema").glob("*.sql")) for s in read_sql_file(p)]
    assert len(statements) > 20
    assert all(s.upper().startswith(("CREATE TABLE", "CREATE INDEX")) for s in statements)


def test_schema_is_created_idempotently_with_every_table(any_warehouse):
    any_warehouse.create_schema()  # second time: nothing fails, nothing duplicates
    for table in ("mimiciv_hosp.labevents", "mimiciv_icu.chartevents", "mimiciv_note.radiology",
                  "mimiciv_ecg.record_list", "mimiciv_cxr.metadata", "vigil_features.stay_events",
                  "vigil_models.model_versions", "vigil_risk.risk_scores", "vigil_audit.quarantine"):
        assert any_warehouse.table_exists(table), table
    assert any_warehouse.scalar("SELECT COUNT(*) FROM vigil_features.concept_map") >= 30
    assert {t.split(".")[0] for t in any_warehouse._time_columns} <= set(SCHEMAS)


def test_bulk_insert_round_trips_types_nulls_and_bytes(any_warehouse):
    vectors = [np.arange(4, dtype="<f4").tobytes(), np.ones(4, dtype="<f4").tobytes()]
    frame = pd.DataFrame({
        "encoder_id": ["e", "e"], "content_hash": ["a,\"b\"", "new\nline"], "modality": ["note", ""],
        "dim": [4, 4], "vector": vectors,
    })
    with any_warehouse.begin() as conn:
        assert any_warehouse.bulk_insert(conn, "vigil_features.embeddings", frame) == 2
    back = any_warehouse.read("SELECT * FROM vigil_features.embeddings ORDER BY content_hash")
    assert back["content_hash"].tolist() == sorted(frame["content_hash"])
    assert [bytes(v) for v in back.sort_values("content_hash")["vector"]] == [vectors[0], vectors[1]]
    assert set(back["modality"]) == {"note", ""}  # an empty string stays a string, not NULL

    times = pd.DataFrame({
        "source_table": ["events"] * 3, "night": [date(2026, 2, 1)] * 3,
        "high_water": pd.to_datetime(["2026-02-02 00:00:00", "2026-02-02 00:00:00.25", "2026-02-01 23:59:59"],
                                     format="ISO8601"),
    })
    times["source_table"] = ["a", "b", "c"]
    with any_warehouse.begin() as conn:
        any_warehouse.bulk_insert(conn, "vigil_audit.watermarks", times)
    later = any_warehouse.read("SELECT source_table FROM vigil_audit.watermarks WHERE high_water > :t "
                               "ORDER BY high_water", {"t": datetime(2026, 2, 2)})
    assert later["source_table"].tolist() == ["b"]
    read = any_warehouse.read_table("vigil_audit.watermarks")
    assert str(read["high_water"].dtype) == "datetime64[us]"
    assert read.sort_values("source_table")["high_water"].iloc[1] == pd.Timestamp("2026-02-02 00:00:00.25")


def test_replace_rows_replaces_exactly_the_key_range(any_warehouse):
    def rows(night, n, value):
        return pd.DataFrame({"night": [night] * n, "source_table": "events", "expectation": "e",
                             "column_name": "c", "success": True, "element_count": value, "unexpected_count": 0})

    with any_warehouse.begin() as conn:
        any_warehouse.replace_rows(conn, "vigil_audit.dq_results", "night = :n", {"n": date(2026, 1, 1)},
                                   rows(date(2026, 1, 1), 3, 1))
        any_warehouse.replace_rows(conn, "vigil_audit.dq_results", "night = :n", {"n": date(2026, 1, 2)},
                                   rows(date(2026, 1, 2), 2, 1))
    with any_warehouse.begin() as conn:
        any_warehouse.replace_rows(conn, "vigil_audit.dq_results", "night = :n", {"n": date(2026, 1, 1)},
                                   rows(date(2026, 1, 1), 1, 9))
    counts = any_warehouse.read("SELECT night, COUNT(*) AS n, MAX(element_count) AS v FROM vigil_audit.dq_results "
                                "GROUP BY night ORDER BY night")
    assert counts["n"].tolist() == [1, 2]
    assert counts["v"].tolist() == [9, 1]


def test_a_failed_transaction_leaves_nothing(any_warehouse):
    frame = pd.DataFrame({"source_table": ["x"], "night": [date(2026, 1, 1)], "high_water": [datetime(2026, 1, 2)]})
    with pytest.raises(RuntimeError), any_warehouse.begin() as conn:
        any_warehouse.bulk_insert(conn, "vigil_audit.watermarks", frame)
        raise RuntimeError("killed mid-publish")
    assert any_warehouse.scalar("SELECT COUNT(*) FROM vigil_audit.watermarks") == 0


def test_delete_in_binds_values_in_chunks(any_warehouse):
    ids = [f"r'{i}" for i in range(2000)]  # quotes in ids: bound, never pasted into SQL
    frame = pd.DataFrame({"night": date(2026, 1, 1), "source_table": "notes", "record_id": ids, "stay_id": 1,
                          "reason": "r", "check_name": "c"})
    with any_warehouse.begin() as conn:
        any_warehouse.bulk_insert(conn, "vigil_audit.quarantine", frame)
        deleted = any_warehouse.delete_in(conn, "vigil_audit.quarantine", "record_id", ids[:1500],
                                          "source_table = :t", {"t": "notes"})
    assert deleted == 1500
    assert any_warehouse.scalar("SELECT COUNT(*) FROM vigil_audit.quarantine") == 500


def test_read_arrow_with_no_values_returns_no_rows_and_the_columns(any_warehouse):
    frame = pd.DataFrame({"night": date(2026, 1, 1), "source_table": "notes", "record_id": ["a"], "stay_id": [7],
                          "reason": "r", "check_name": "c"})
    with any_warehouse.begin() as conn:
        any_warehouse.bulk_insert(conn, "vigil_audit.quarantine", frame)
    query = "SELECT stay_id, record_id FROM vigil_audit.quarantine WHERE stay_id IN :values AND night = :night"
    empty = any_warehouse.read_arrow(query, {"night": date(2026, 1, 1)}, [])  # a night with no active stay
    assert empty.num_rows == 0 and empty.column_names == ["stay_id", "record_id"]
    assert any_warehouse.read_arrow(query, {"night": date(2026, 1, 1)}, [7]).num_rows == 1


def test_risk_factors_view_keeps_categorical_and_unmeasured_values_as_text(any_warehouse):
    """A factor's value may be a category or "not measured": the view gives it as text, and as a
    number only where it is one, on both backends, and no row can make the view fail."""
    from pipeline.score import to_json

    factors = [{"factor": "age", "contribution": 0.2, "value": 70.5}, {"factor": "sex", "contribution": 0.1, "value": "F"},
               {"factor": "lactate", "contribution": -0.05, "value": "not measured"},
               {"factor": "notes", "contribution": float("nan"), "value": float("nan")}]
    with any_warehouse.begin() as conn:
        any_warehouse.bulk_insert(conn, "vigil_risk.risk_scores", pd.DataFrame([{
            "night": date(2026, 1, 1), "stay_id": 1, "model_name": "m", "subject_id": 10, "model_version": "v1",
            "prediction_time": datetime(2026, 1, 2), "probability": 0.5, "risk_band": "medium",
            "operating_threshold": 0.3, "modalities": "tabular", "top_factors": to_json(factors)}]))
    rows = any_warehouse.read("SELECT rank, factor, value, value_numeric, contribution FROM vigil_risk.risk_factors "
                              "ORDER BY rank")
    assert rows["factor"].tolist() == ["age", "sex", "lactate", "notes"]
    assert rows["value"].tolist()[1:3] == ["F", "not measured"] and float(rows["value"].iloc[0]) == 70.5
    assert pd.isna(rows["value"].iloc[3])
    assert rows["value_numeric"].iloc[0] == 70.5 and rows["value_numeric"].iloc[1:].isna().all()
    assert rows["contribution"].iloc[:3].tolist() == [0.2, 0.1, -0.05] and pd.isna(rows["contribution"].iloc[3])


def test_init_brings_an_older_warehouse_to_one_audit_row_per_night(any_warehouse):
    """Earlier versions kept a row per run; `vigil init` keeps each night's latest publish (and
    its row counts) and from then on the database refuses a second row for a night."""
    with any_warehouse.begin() as conn:
        any_warehouse.execute(conn, "DROP INDEX vigil_audit.runs_one_per_night")
        for run, published in (("a", datetime(2026, 1, 2, 1)), ("b", datetime(2026, 1, 2, 3))):
            any_warehouse.bulk_insert(conn, "vigil_audit.runs", pd.DataFrame([{
                "run_id": run, "night": date(2026, 1, 1), "prediction_time": datetime(2026, 1, 2),
                "started_at": published, "published_at": published, "status": "published", "stays_active": 1,
                "stays_scored": 1, "risk_rows": 1, "risk_rows_sha256": run * 64, "models": "{}"}]))
            any_warehouse.bulk_insert(conn, "vigil_audit.run_counts", pd.DataFrame([{
                "run_id": run, "night": date(2026, 1, 1), "source_table": "events", "records_in": 1, "used": 1,
                "quarantined": 0, "excluded": 0}]))
    any_warehouse.create_schema()
    assert any_warehouse.read("SELECT run_id FROM vigil_audit.runs")["run_id"].tolist() == ["b"]
    assert any_warehouse.read("SELECT run_id FROM vigil_audit.run_counts")["run_id"].tolist() == ["b"]
    with pytest.raises(Exception, match="(?i)unique"):
        with any_warehouse.begin() as conn:
            any_warehouse.execute(conn, "INSERT INTO vigil_audit.runs (run_id, night, prediction_time, started_at, "
                                        "published_at, status, stays_active, stays_scored, risk_rows, risk_rows_sha256, "
                                        "models) SELECT 'c', night, prediction_time, started_at, published_at, status, "
                                        "stays_active, stays_scored, risk_rows, risk_rows_sha256, models "
                                        "FROM vigil_audit.runs")
