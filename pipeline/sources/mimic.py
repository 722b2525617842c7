"""MIMIC-IV family source adapter: runs the queries in ``sql/extract`` and turns their rows into
canonical frames.

SQL selects raw rows by arrival window; everything dialect-sensitive (assigning hospital rows
to ICU stays by time, mapping items to codes and units, MIMIC-CXR's split date/time) happens
here, vectorised. Rows outside the cohort definition are returned as exclusions with a reason,
so extraction accounting always closes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.frames import CONTRACTS, RECORD_TABLES, TIME, conform, empty
from pipeline.sources.screen import RawColumns, screen
from pipeline.sources.spill import EventSpill, spilled
from pipeline.store.features import concept_map
from pipeline.store.warehouse import Warehouse

EPOCH = datetime(1900, 1, 1)
# Rows are placed in a stay only from its ICU admission on. A tolerance before admission (ED labs)
# would make the answer depend on when extraction ran: at midnight a lab drawn at 22:00 cannot yet
# belong to a stay admitted at 01:00, and a nightly run would lose it for good.
PRE_ADMISSION_TOLERANCE = pd.Timedelta(0)

# What each extraction query's columns hold (sql/extract/<name>.sql), checked value by value.
_EVENT_COLUMNS = dict(numbers=("valuenum",), times=("time", "arrival_time"), texts=("value_text", "source_unit"))
RAW_COLUMNS = {
    "cohort": RawColumns(keys=("stay_id", "subject_id"), integers=("hadm_id",), numbers=("anchor_age", "anchor_year"),
                         times=("admit_time", "discharge_time"), texts=("unit", "sex", "admission_type")),
    "chartevents": RawColumns(keys=("subject_id", "itemid"), integers=("stay_id",), **_EVENT_COLUMNS),
    "outputevents": RawColumns(keys=("subject_id", "itemid"), integers=("stay_id",), **_EVENT_COLUMNS),
    "labevents": RawColumns(keys=("labevent_id", "subject_id", "itemid"), **_EVENT_COLUMNS),
    "notes": RawColumns(keys=("note_id", "subject_id"), integers=("hadm_id",), times=("time", "arrival_time"),
                        texts=("note_id", "note_type", "text")),
    "ecgs": RawColumns(keys=("study_id", "subject_id"), numbers=("rr_interval", "qrs_onset", "qrs_end", "t_end",
                                                                 "qrs_axis"), times=("time",), texts=("path",)),
    "images": RawColumns(keys=("dicom_id", "subject_id"), integers=("study_id", "studydate"), numbers=("studytime",),
                         texts=("dicom_id", "path", "modality", "viewposition")),
}
QUARANTINE_COLUMNS = ["source_table", "record_id", "stay_id", "reason", "check_name"]


def _no_quarantine() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="Int64" if c == "stay_id" else "string") for c in QUARANTINE_COLUMNS})


@dataclass
class Extraction:
    """Canonical frames for one window, the rows the cohort definition excluded, and the rows
    whose raw values could not be read (quarantined here, with the column that failed)."""

    frames: dict[str, pd.DataFrame]
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {"table": pd.Series(dtype="string"), "record_id": pd.Series(dtype="string"),
         "reason": pd.Series(dtype="string")}))
    quarantined: pd.DataFrame = field(default_factory=_no_quarantine)

    def records_in(self, table: str) -> int:
        return (len(self.frames[table]) + int((self.excluded["table"] == table).sum())
                + int((self.quarantined["source_table"] == table).sum()))


@dataclass(frozen=True)
class SubjectShard:
    """The subjects ``[first, end)`` one extraction reads (an open end when None).

    A patient's stays and rows are always in one shard, so placing rows in stays, numbering
    exact repeats and finding a patient's duplicate rows never look across shards. (An id that
    a feed reused for two patients is found only when both are in one shard.) The first shard starts and
    the last ends open, so every row is in exactly one shard, even one whose subject id is
    not a number (SQLite sorts text after every number): it is read and quarantined there.
    """

    first: int | None = None
    end: int | None = None
    index: int = 0

    def params(self) -> dict:
        return {"open_start": int(self.first is None), "subject_from": int(self.first or 0),
                "open_end": int(self.end is None), "subject_to": int(self.end or 0)}


ALL_SUBJECTS = SubjectShard()


def subject_shards(wh: Warehouse, until: datetime, rows_per_shard: int | None,
                   since: datetime | None = None) -> list[SubjectShard]:
    """Consecutive shards of subjects holding about ``rows_per_shard`` event rows each that
    arrived in ``(since, until]`` (one shard of everything when None or when they fit in one).

    Sized by rows, not patients, because memory follows the rows a shard reads. A patient's
    rows are never split: a shard holds at most ``rows_per_shard`` rows unless one patient alone
    has more.
    """
    if not rows_per_shard:
        return [ALL_SUBJECTS]
    if rows_per_shard < 1:
        raise ValueError(f"a shard needs room for at least one row, not {rows_per_shard}")
    counted = wh.read(wh.sql("extract/subject_rows"), {"since": since or EPOCH, "until": until})
    subjects = pd.to_numeric(counted["subject_id"], errors="coerce")   # one that is no number: the last shard
    usable = subjects.notna() & np.isfinite(subjects) & (subjects == subjects.round()) & (subjects.abs() < 2.0 ** 62)
    counted = counted.assign(subject_id=subjects)[usable].sort_values("subject_id")
    bounds, filled = [], 0
    for subject, rows in zip(counted["subject_id"].astype("int64").tolist(), counted["n_rows"].astype("int64").tolist()):
        if filled and filled + rows > rows_per_shard:   # this subject would overfill the shard: the next one
            bounds.append(subject)
            filled = 0
        filled += rows
    edges = [None, *bounds, None]
    return [SubjectShard(first, end, i) for i, (first, end) in enumerate(zip(edges[:-1], edges[1:]))]


EVENT_QUERIES = ("chartevents", "outputevents", "labevents")
MAX_SPILL_SHARDS = 512   # one open file per shard while a table is split


def _since(since: dict[str, datetime] | None) -> dict[str, datetime]:
    return {t: (since or {}).get(t) or EPOCH for t in ("events", *RECORD_TABLES)}


def extract_in_shards(wh: Warehouse, until: datetime, rows_per_shard: int | None,
                      since: dict[str, datetime] | None = None,
                      spill_dir: Path | None = None) -> Iterator[tuple[SubjectShard, Extraction]]:
    """Each subject shard's extraction in turn (:func:`subject_shards`, :func:`extract`).

    On PostgreSQL, with more than one shard, the event tables are first read once each, in the
    order they lie, and split into the shards' files on local disk (``pipeline/sources/spill.py``):
    one sequential scan instead of an index scan per shard over rows spread across the table.
    They go in ``spill_dir`` (default: ``TMPDIR``) and are removed when the generator ends or is
    closed (``contextlib.closing``).
    """
    since = _since(since)
    shards = subject_shards(wh, until, rows_per_shard, since["events"])
    if wh.is_sqlite or not 1 < len(shards) <= MAX_SPILL_SHARDS:
        for shard in shards:
            yield shard, extract(wh, until, since, shard)
        return
    params = {"since": since["events"], "until": until, **ALL_SUBJECTS.params()}
    with spilled(wh, EVENT_QUERIES, params, [shard.first for shard in shards[1:]], spill_dir) as spill:
        for shard in shards:
            yield shard, extract(wh, until, since, shard, spill)


class _Screened:
    """Raw rows of one night's queries, screened: the unreadable ones are set aside with reasons."""

    def __init__(self, shard: SubjectShard = ALL_SUBJECTS):
        self.parts: list[pd.DataFrame] = []
        self.shard = shard

    def keep(self, table: str, raw: pd.DataFrame, reasons: pd.Series, record_ids: pd.Series) -> pd.DataFrame:
        """The clean rows of ``raw``; the others are quarantined in canonical ``table`` (a row
        without a usable id is named by its position in the night's read, or its shard's)."""
        bad = reasons.notna()
        if not bad.any():   # the usual case: no copy of millions of rows
            return raw.reset_index(drop=True)
        stays = raw["stay_id"] if "stay_id" in raw else pd.Series(pd.NA, index=raw.index)
        prefix = f"{table}/" if self.shard == ALL_SUBJECTS else f"{table}/shard-{self.shard.index}/"
        unnamed = pd.Series([f"{prefix}row-{i}" for i in range(len(raw))], index=raw.index, dtype="string")
        self.parts.append(pd.DataFrame({
            "source_table": table, "record_id": record_ids.astype("string").fillna(unnamed)[bad],
            "stay_id": stays[bad].astype("Int64"), "reason": reasons[bad].astype("string"),
            "check_name": "extract"}, columns=QUARANTINE_COLUMNS))
        return raw[~bad].reset_index(drop=True)

    def frame(self) -> pd.DataFrame:
        return pd.concat(self.parts, ignore_index=True).astype(_no_quarantine().dtypes.to_dict()) \
            if self.parts else _no_quarantine()


def _read(wh: Warehouse, query: str, params: dict, shard: SubjectShard,
          spill: EventSpill | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """A source query's rows of the shard's subjects (from the spill when it holds the query),
    screened value by value against :data:`RAW_COLUMNS`."""
    if spill is not None and spill.holds(query):
        rows = spill.frame(query, shard.index)
    else:
        rows = wh.read_columnar(wh.sql(f"extract/{query}"), {**params, **shard.params()})
    return screen(rows, RAW_COLUMNS[query])


def read_concept_map(wh: Warehouse) -> pd.DataFrame:
    return concept_map(wh)


def extract(wh: Warehouse, until: datetime, since: dict[str, datetime] | None = None,
            shard: SubjectShard = ALL_SUBJECTS, spill: EventSpill | None = None) -> Extraction:
    """Canonical frames of everything of the shard's subjects that arrived in ``(since[table], until]``.

    The cohort is a full snapshot (every stay admitted by ``until``); the other tables are
    incremental from their own watermark (default: the beginning of time). The shards of
    :func:`subject_shards` together give exactly the rows of one unsharded extraction; a
    ``spill`` of the event tables (see :func:`extract_in_shards`) gives the shard's event rows.
    """
    since = _since(since)
    screened = _Screened(shard)
    raw_cohort, reasons = _read(wh, "cohort", {"until": until}, shard)
    raw_cohort = screened.keep("cohort", raw_cohort, reasons, raw_cohort["stay_id"])
    cohort = _cohort(raw_cohort, until)
    stays = stay_spans(raw_cohort, until)
    excluded: list[pd.DataFrame] = []
    events, dropped = _events(wh, stays, since["events"], until, read_concept_map(wh), screened, shard, spill)
    excluded.append(dropped)
    frames = {"cohort": cohort, "events": events}
    for table, reader in (("notes", _notes), ("ecgs", _ecgs), ("images", _images)):
        frame, dropped = reader(wh, stays, since[table], until, screened, shard)
        frames[table] = frame
        excluded.append(dropped)
    return Extraction(frames=frames, excluded=pd.concat(excluded, ignore_index=True).astype("string"),
                      quarantined=screened.frame())


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


def _events(wh: Warehouse, spans: pd.DataFrame, since: datetime, until: datetime, concepts: pd.DataFrame,
            screened: _Screened, shard: SubjectShard, spill: EventSpill | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    params = {"since": since, "until": until}
    charted = []
    for table in ("chartevents", "outputevents"):
        rows, reasons = _read(wh, table, params, shard, spill)
        rows["source_row_id"] = chart_row_ids(table, rows)
        rows = screened.keep("events", rows, reasons, rows["source_row_id"])
        missing_stay = rows["stay_id"].isna()
        rows.loc[missing_stay, "stay_id"] = assign_stays(rows[missing_stay], spans, "source_row_id")
        charted.append(with_concepts(rows, concepts, f"mimiciv_icu.{table}"))
    chart = pd.concat(charted, ignore_index=True)

    labs, reasons = _read(wh, "labevents", params, shard, spill)
    labs["source_row_id"] = "labevents/" + labs["labevent_id"].astype("string")
    labs = screened.keep("events", labs, reasons, labs["source_row_id"])
    labs["stay_id"] = assign_stays(labs, spans, "source_row_id")
    labs = with_concepts(labs.drop(columns=["labevent_id"]), concepts, "mimiciv_hosp.labevents")

    mapped = pd.concat([chart, labs], ignore_index=True)
    mapped["stay_id"] = mapped["stay_id"].astype("Int64")
    unmapped = mapped["code"].isna()
    outside = mapped["stay_id"].isna() & (mapped["source_table"] == "mimiciv_hosp.labevents") & ~unmapped
    excluded = pd.concat([
        _exclusions("events", mapped.loc[unmapped, "source_row_id"], "item is not in the concept map"),
        _exclusions("events", mapped.loc[outside, "source_row_id"], _outside_reason(mapped.loc[outside], until)),
    ], ignore_index=True)
    kept = mapped[~unmapped & ~outside]
    scaled = kept["valuenum"] * kept["scale"]  # a sign the source wrote (-0 too) stays: validation judges it
    kept["value"] = scaled.where(kept["offset_value"] == 0, scaled + kept["offset_value"])
    kept["lower_exclusive"] = kept["lower_exclusive"].fillna(False).astype(bool)
    kept["expected_unit"] = kept["source_unit_concept"]
    kept["source_unit"] = kept["source_unit"].replace({"": None, "UNK": None})
    kept["value_text"] = kept["value_text"].astype("string").str.slice(0, 64)
    return conform(kept, "events"), excluded


def with_concepts(rows: pd.DataFrame, concepts: pd.DataFrame, source_table: str) -> pd.DataFrame:
    """Rows of one source table with its name and their concept map row's columns: a left merge on
    ``itemid`` (``suffixes=("", "_concept")``), looked up by position, so the rows' own columns
    are not copied.

    >>> concepts = pd.DataFrame({"source_table": ["t", "t", "u"], "itemid": [1, 2, 3], "code": ["A", "B", "C"],
    ...                          "source_unit": ["mg", "g", "l"]})
    >>> rows = pd.DataFrame({"itemid": [2, 3, 1], "source_unit": ["g", "g", "g"]})
    >>> with_concepts(rows, concepts, "t")[["source_table", "code", "source_unit_concept"]].values.tolist()
    [['t', 'B', 'g'], ['t', nan, nan], ['t', 'A', 'mg']]
    """
    table = concepts[concepts["source_table"] == source_table].reset_index(drop=True)
    position = pd.Index(table["itemid"]).get_indexer(rows["itemid"])
    looked_up = table.drop(columns=["source_table", "itemid"]).reindex(position)   # -1: no concept row
    looked_up.index = rows.index
    looked_up.columns = [f"{c}_concept" if c in rows else c for c in looked_up.columns]
    return pd.concat([rows.assign(source_table=source_table), looked_up], axis=1)


def chart_row_ids(table: str, rows: pd.DataFrame) -> pd.Series:
    """Ids for rows of a table without a row key: ``<table>/<subject>/<item>/<chart time to the
    second>#<n>``, where ``n`` numbers the exact repeats of one id in read order.

    Built column-wise (a night reads millions): only rows whose (subject, item, second) may
    repeat, by an integer hash, are grouped by their id to number them; the others are ``#0``.

    >>> rows = pd.DataFrame({"subject_id": pd.array([7, 7, None, 7], dtype="Int64"),
    ...     "itemid": pd.array([220045, 220045, 1, 220045], dtype="Int64"),
    ...     "time": pd.to_datetime(["2180-05-06 21:30:14.5", "2180-05-06 21:30:14", None, "0999-01-02"], format="ISO8601")})
    >>> chart_row_ids("chartevents", rows).tolist()
    ['chartevents/7/220045/21800506T213014#0', 'chartevents/7/220045/21800506T213014#1', 'chartevents/?/1/NaT#0', 'chartevents/7/220045/09990102T000000#0']
    """
    if rows.empty:
        return pd.Series([], index=rows.index, dtype="string")
    seconds = rows["time"].to_numpy("datetime64[s]")
    subject, item = (rows[c].astype("Int64").fillna(-1).to_numpy(np.int64) for c in ("subject_id", "itemid"))
    base = pc.binary_join_element_wise(
        table, _id_part(rows["subject_id"]), _id_part(rows["itemid"]), _compact_times(seconds), "/")
    key = (subject.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
           ^ item.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
           ^ seconds.view(np.int64).astype(np.uint64))
    repeats = np.zeros(len(rows), dtype=np.int64)
    maybe = pd.Series(key).duplicated(keep=False).to_numpy()
    if maybe.any():
        ids = pd.Series(base.filter(pa.array(maybe)), dtype="string")
        repeats[maybe] = ids.groupby(ids).cumcount().to_numpy()
    numbered = pc.binary_join_element_wise(base, pa.array(repeats).cast(pa.string()), "#")
    return pd.Series(numbered, index=rows.index, dtype="string")


def _id_part(values: pd.Series) -> pa.Array:
    return pc.fill_null(pa.array(values.astype("Int64")).cast(pa.string()), "?")


def _compact_times(seconds: np.ndarray) -> pa.Array:
    """``%Y%m%dT%H%M%S`` of each ``datetime64[s]`` ("NaT" when missing), by integer arithmetic."""
    days = seconds.astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    years = days.astype("datetime64[Y]")
    date = ((years.view(np.int64) + 1970) * 10000 + (months - years.astype("datetime64[M]")).view(np.int64) * 100
            + (days - months.astype("datetime64[D]")).view(np.int64) + 101)
    clock = (seconds - days.astype("datetime64[s]")).view(np.int64)
    hms = clock // 3600 * 10000 + clock // 60 % 60 * 100 + clock % 60
    missing = np.isnat(seconds)
    if (bc := ~missing & (years.view(np.int64) < -1970)).any():   # before year 0: pandas formats the sign
        formatted = pd.Series(seconds).dt.strftime("%Y%m%dT%H%M%S").to_numpy(dtype=object)
        missing = missing | bc
    text = pc.binary_join_element_wise(pc.utf8_lpad(pa.array(date, mask=missing).cast(pa.string()), 8, "0"),
                                       pc.utf8_lpad(pa.array(hms).cast(pa.string()), 6, "0"), "T")
    text = pc.fill_null(text, "NaT")
    if bc.any():
        text = pa.array(np.where(bc, formatted, text.to_numpy(zero_copy_only=False)), type=pa.string())
    return text


def _notes(wh: Warehouse, spans: pd.DataFrame, since: datetime, until: datetime, screened: _Screened,
           shard: SubjectShard):
    raw, reasons = _read(wh, "notes", {"since": since, "until": until}, shard)
    raw["record_id"] = raw["note_id"].astype("string")
    raw = screened.keep("notes", raw, reasons, raw["record_id"])
    raw["category"] = raw["note_type"]
    raw["stay_id"] = assign_stays(raw, spans, "record_id")
    return _split_outside("notes", raw, until)


def _ecgs(wh: Warehouse, spans: pd.DataFrame, since: datetime, until: datetime, screened: _Screened,
          shard: SubjectShard):
    raw, reasons = _read(wh, "ecgs", {"since": since, "until": until}, shard)
    raw["record_id"] = raw["study_id"].astype("Int64").astype("string")
    raw = screened.keep("ecgs", raw, reasons, raw["record_id"])
    raw["arrival_time"] = raw["time"]
    raw["uri"] = raw["path"]
    raw["qrs_duration"] = raw["qrs_end"] - raw["qrs_onset"]
    raw["stay_id"] = assign_stays(raw, spans, "record_id")
    return _split_outside("ecgs", raw, until)


def _images(wh: Warehouse, spans: pd.DataFrame, since: datetime, until: datetime, screened: _Screened,
            shard: SubjectShard):
    params = {"since_day": int(since.strftime("%Y%m%d")), "until_day": int(until.strftime("%Y%m%d"))}
    raw, reasons = _read(wh, "images", params, shard)
    raw["record_id"] = raw["dicom_id"].astype("string")
    raw["time"] = study_datetime(raw["studydate"], raw["studytime"])
    reasons = reasons.mask(reasons.isna() & raw["time"].isna(), "study date and time is not a date and time")
    # the query reads whole days, and a day falls in two nights' windows: a row with a usable time
    # is this night's when its time is; one without, when its study day begins within the night
    day = pd.to_datetime(raw["studydate"].astype("Int64").astype("string"), format="%Y%m%d", errors="coerce")
    first_day = day.notna() & (day >= pd.Timestamp(since)) & (day < pd.Timestamp(until))
    no_day = day.isna() & (raw["studydate"] >= params["since_day"]) & (raw["studydate"] < params["until_day"])
    timely = (raw["time"] > pd.Timestamp(since)) & (raw["time"] <= pd.Timestamp(until))
    raw = raw[(reasons.isna() & timely) | (reasons.notna() & (first_day | no_day).fillna(False))]
    raw = screened.keep("images", raw, reasons[raw.index], raw["record_id"])
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
    time = pd.to_numeric(studytime, errors="coerce").astype(float)
    clock = time.where(np.isfinite(time.fillna(0)) & (time.fillna(0).abs() < 1e7)).fillna(-1).astype(int)
    hours, minutes, secs = clock // 10000, clock // 100 % 100, clock % 100
    seconds = (hours * 3600 + minutes * 60 + secs).where((clock >= 0) & (hours < 24) & (minutes < 60) & (secs < 61))
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

