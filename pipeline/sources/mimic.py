"""MIMIC-IV family source adapter: runs the queries in ``sql/extract`` and turns their rows into
canonical frames.

SQL selects raw rows by arrival window; everything dialect-sensitive (assigning hospital rows
to ICU stays by time, mapping items to codes and units, MIMIC-CXR's split date/time) happens
here, vectorised. Rows outside the cohort definition are returned as exclusions with a reason,
so extraction accounting always closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from pipeline.frames import CONTRACTS, TIME, conform, empty
from pipeline.warehouse import Warehouse

EPOCH = datetime(1900, 1, 1)
# Rows are placed in a stay only from its ICU admission on. A tolerance before admission (ED labs)
# would make the answer depend on when extraction ran: at midnight a lab drawn at 22:00 cannot yet
# belong to a stay admitted at 01:00, and a nightly run would lose it for good.
PRE_ADMISSION_TOLERANCE = pd.Timedelta(0)


@dataclass
class Extraction:
    """Canonical frames for one window, plus the rows the cohort definition excluded."""

    frames: dict[str, pd.DataFrame]
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {"table": pd.Series(dtype="string"), "record_id": pd.Series(dtype="string"),
         "reason": pd.Series(dtype="string")}))

    def records_in(self, table: str) -> int:
        return len(self.frames[table]) + int((self.excluded["table"] == table).sum())


def read_concept_map(wh: Warehouse) -> pd.DataFrame:
    return wh.read("SELECT * FROM vigil_features.concept_map")


def extract(wh: Warehouse, until: datetime, since: dict[str, datetime] | None = None) -> Extraction:
    """Canonical frames of everything that arrived in ``(since[table], until]``.

    The cohort is a full snapshot (every stay admitted by ``until``); the other tables are
    incremental from their own watermark (default: the beginning of time).
    """
    since = {t: (since or {}).get(t) or EPOCH for t in ("events", "notes", "ecgs", "images")}
    raw_cohort = wh.read(wh.sql("extract/cohort"), {"until": until}, times=("admit_time", "discharge_time"))
    cohort = _cohort(raw_cohort, until)
    stays = stay_spans(raw_cohort, until)
    excluded: list[pd.DataFrame] = []
    events, dropped = _events(wh, stays, since["events"], until, read_concept_map(wh))
    excluded.append(dropped)
    frames = {"cohort": cohort, "events": events}
    for table, reader in (("notes", _notes), ("ecgs", _ecgs), ("images", _images)):
        frame, dropped = reader(wh, stays, since[table], until)
        frames[table] = frame
        excluded.append(dropped)
    return Extraction(frames=frames, excluded=pd.concat(excluded, ignore_index=True).astype("string"))


def _cohort(raw: pd.DataFrame, until: datetime) -> pd.DataFrame:
    raw = raw.copy()
    raw["discharge_time"] = raw["discharge_time"].where(raw["discharge_time"] <= pd.Timestamp(until))
    raw["age"] = raw["anchor_age"] + (raw["admit_time"].dt.year - raw["anchor_year"])
    return conform(raw, "cohort")


def stay_spans(cohort: pd.DataFrame, until: datetime) -> pd.DataFrame:
    """Every stay's [intime - tolerance, outtime] span (open stays end at ``until``)."""
    spans = cohort[["stay_id", "subject_id", "admit_time", "discharge_time"]].copy()
    spans["span_start"] = spans["admit_time"] - PRE_ADMISSION_TOLERANCE
    spans["span_end"] = spans["discharge_time"].fillna(pd.Timestamp(until)).clip(upper=pd.Timestamp(until))
    return spans


def assign_stays(rows: pd.DataFrame, spans: pd.DataFrame, key: str) -> pd.Series:
    """The ICU stay each row falls in, by subject and time (``<NA>`` when none).

    When stays overlap, the most recently admitted one wins.

    >>> spans = pd.DataFrame({"stay_id": [1, 2], "subject_id": [7, 7],
    ...     "admit_time": pd.to_datetime(["2026-01-01", "2026-01-05"]),
    ...     "span_start": pd.to_datetime(["2026-01-01", "2026-01-05"]),
    ...     "span_end": pd.to_datetime(["2026-01-03", "2026-01-09"])})
    >>> rows = pd.DataFrame({"id": ["a", "b", "c"], "subject_id": [7, 7, 8],
    ...     "time": pd.to_datetime(["2026-01-02", "2026-01-04", "2026-01-02"])})
    >>> assign_stays(rows, spans, "id").tolist()
    [1, <NA>, <NA>]
    """
    if rows.empty:
        return pd.Series(pd.array([], dtype="Int64"), index=rows.index)
    left = rows[[key, "subject_id", "time"]].reset_index()
    joined = left.merge(spans[["stay_id", "subject_id", "admit_time", "span_start", "span_end"]],
                        on="subject_id", how="inner")
    inside = joined[(joined["time"] >= joined["span_start"]) & (joined["time"] <= joined["span_end"])]
    best = inside.sort_values("admit_time").drop_duplicates("index", keep="last").set_index("index")
    return best["stay_id"].reindex(rows.index).astype("Int64")


def _exclusions(table: str, record_ids: pd.Series, reason) -> pd.DataFrame:
    reasons = reason.values if isinstance(reason, pd.Series) else reason
    return pd.DataFrame({"table": table, "record_id": record_ids.astype("string").values, "reason": reasons})


def _events(wh: Warehouse, spans: pd.DataFrame, since: datetime, until: datetime,
            concepts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    params = {"since": since, "until": until}
    charted = []
    for table in ("chartevents", "outputevents"):
        rows = wh.read(wh.sql(f"extract/{table}"), params, times=("time", "arrival_time"))
        rows["source_table"] = f"mimiciv_icu.{table}"
        # neither table has a row key: subject, item and chart time, numbered within exact repeats
        base_id = (f"{table}/" + rows["subject_id"].astype(str) + "/" + rows["itemid"].astype(str) + "/"
                   + rows["time"].dt.strftime("%Y%m%dT%H%M%S").fillna("NaT"))
        rows["source_row_id"] = base_id + "#" + rows.groupby(base_id).cumcount().astype(str)
        missing_stay = rows["stay_id"].isna()
        rows.loc[missing_stay, "stay_id"] = assign_stays(rows[missing_stay], spans, "source_row_id")
        charted.append(rows)
    chart = pd.concat(charted, ignore_index=True)

    labs = wh.read(wh.sql("extract/labevents"), params, times=("time", "arrival_time"))
    labs["source_table"] = "mimiciv_hosp.labevents"
    labs["source_row_id"] = "labevents/" + labs["labevent_id"].astype(str)
    labs["stay_id"] = assign_stays(labs, spans, "source_row_id")

    rows = pd.concat([chart, labs.drop(columns=["labevent_id"])], ignore_index=True)
    rows["stay_id"] = rows["stay_id"].astype("Int64")
    mapped = rows.merge(concepts, on=["source_table", "itemid"], how="left", suffixes=("", "_concept"))
    unmapped = mapped["code"].isna()
    outside = mapped["stay_id"].isna() & (mapped["source_table"] == "mimiciv_hosp.labevents") & ~unmapped
    excluded = pd.concat([
        _exclusions("events", mapped.loc[unmapped, "source_row_id"], "item is not in the concept map"),
        _exclusions("events", mapped.loc[outside, "source_row_id"], _outside_reason(mapped.loc[outside], until)),
    ], ignore_index=True)
    kept = mapped[~unmapped & ~outside].copy()
    kept["value"] = kept["valuenum"] * kept["scale"] + kept["offset_value"]
    kept["expected_unit"] = kept["source_unit_concept"]
    kept["source_unit"] = kept["source_unit"].replace({"": None, "UNK": None})
    kept["value_text"] = kept["value_text"].astype("string").str.slice(0, 64)
    return conform(kept, "events"), excluded


def _notes(wh: Warehouse, spans: pd.DataFrame, since: datetime, until: datetime):
    raw = wh.read(wh.sql("extract/notes"), {"since": since, "until": until}, times=("time", "arrival_time"))
    raw["record_id"] = raw["note_id"].astype(str)
    raw["category"] = raw["note_type"]
    raw["stay_id"] = assign_stays(raw, spans, "record_id")
    return _split_outside("notes", raw, until)


def _ecgs(wh: Warehouse, spans: pd.DataFrame, since: datetime, until: datetime):
    raw = wh.read(wh.sql("extract/ecgs"), {"since": since, "until": until}, times=("time",))
    raw["record_id"] = raw["study_id"].astype(str)
    raw["arrival_time"] = raw["time"]
    raw["uri"] = raw["path"]
    raw["qrs_duration"] = raw["qrs_end"] - raw["qrs_onset"]
    raw["stay_id"] = assign_stays(raw, spans, "record_id")
    return _split_outside("ecgs", raw, until)


def _images(wh: Warehouse, spans: pd.DataFrame, since: datetime, until: datetime):
    params = {"since_day": int(since.strftime("%Y%m%d")), "until_day": int(until.strftime("%Y%m%d"))}
    raw = wh.read(wh.sql("extract/images"), params)
    raw["time"] = study_datetime(raw["studydate"], raw["studytime"])
    raw = raw[(raw["time"] > pd.Timestamp(since)) & (raw["time"] <= pd.Timestamp(until))].copy()
    raw["record_id"] = raw["dicom_id"].astype(str)
    raw["arrival_time"] = raw["time"]
    raw["uri"] = raw["path"]
    raw["category"] = raw["modality"]
    raw["view"] = raw["viewposition"]
    raw["stay_id"] = assign_stays(raw, spans, "record_id")
    return _split_outside("images", raw, until)


def study_datetime(studydate: pd.Series, studytime: pd.Series) -> pd.Series:
    """MIMIC-CXR's ``StudyDate`` (YYYYMMDD) and ``StudyTime`` (HHMMSS.fff) as one timestamp.

    >>> study_datetime(pd.Series([21800506]), pd.Series([213014.531])).tolist()
    [Timestamp('2180-05-06 21:30:14')]
    """
    if studydate.empty:
        return pd.Series(pd.array([], dtype="datetime64[us]"), index=studydate.index)
    day = pd.to_datetime(studydate.astype("Int64").astype(str), format="%Y%m%d", errors="coerce")
    clock = studytime.fillna(0).astype(float).astype(int)
    seconds = (clock // 10000) * 3600 + (clock // 100 % 100) * 60 + clock % 100
    return (day + pd.to_timedelta(seconds, unit="s")).astype("datetime64[us]")


def _outside_reason(rows: pd.DataFrame, until: datetime) -> pd.Series:
    """Why rows could not be placed in an ICU stay: no time to place them by, a time in the
    future of the night that received them, or no stay of the patient's around that time."""
    def reason(t) -> str:
        if pd.isna(t):
            return "time is empty, so no ICU stay can be assigned"
        if t > until:
            return "charted after the prediction time (a future clock entry)"
        return "not during an ICU stay"
    return pd.Series([reason(t) for t in rows["time"]], index=rows.index, dtype="string")


def _split_outside(table: str, raw: pd.DataFrame, until: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    if raw.empty:
        return empty(table), _exclusions(table, pd.Series([], dtype="string"), "not during an ICU stay")
    outside = raw["stay_id"].isna()
    return conform(raw[~outside], table), _exclusions(table, raw.loc[outside, "record_id"],
                                                      _outside_reason(raw.loc[outside], until))


def read_enrolment(wh: Warehouse, query: str | None, as_of: datetime) -> pd.DataFrame | None:
    """The stays a model's cohort query (``sql/extract``) enrols by ``as_of``, with their
    enrolment time; None (every stay) without a query."""
    if query is None:
        return None
    raw = wh.read(wh.sql(f"extract/{query}"), {"as_of": as_of}, times=("enrolled_time",))
    return conform(raw, "enrolment")


def read_labels(wh: Warehouse, query: str, as_of: datetime, contract: str = "labels") -> pd.DataFrame:
    """Outcome labels known by ``as_of`` (the query lives in ``sql/extract``)."""
    times = tuple(c for c, dtype in CONTRACTS[contract].items() if dtype == TIME)
    raw = wh.read(wh.sql(f"extract/{query}"), {"as_of": as_of}, times=times)
    return conform(raw, contract)

