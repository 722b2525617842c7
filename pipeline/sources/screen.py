"""Screening raw source rows before they become canonical frames.

A warehouse with loose types (SQLite stores whatever a feed writes) can hand extraction a time
with a time-zone offset beside naive ones, text in a numeric column, bytes that are not UTF-8
in a note, or a row without its key. Each such value would fail the whole table's conversion,
and with it the night for every patient. Screening finds them row by row: the row gets a
reason naming the column, its bad values become missing, and extraction quarantines it while
every other row goes on. On PostgreSQL the column types already guarantee most of this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# A trailing UTC designator or numeric offset after a clock time: "...Z", "...+02:00", "...-0500", "...+05".
_OFFSET = r"\d(?:[Zz]|[+-]\d{1,2}(?::?\d{2})?)$"
_INT64 = 2.0 ** 63


@dataclass(frozen=True)
class RawColumns:
    """What a source query's columns hold, so each value can be checked on its own."""

    keys: tuple[str, ...] = ()       # must be present: whole numbers, or text when also in ``texts``
    integers: tuple[str, ...] = ()   # whole numbers, may be missing
    numbers: tuple[str, ...] = ()    # real numbers, may be missing
    times: tuple[str, ...] = ()      # naive date-times, may be missing
    texts: tuple[str, ...] = ()      # UTF-8 text, may be missing


def screen(raw: pd.DataFrame, columns: RawColumns) -> tuple[pd.DataFrame, pd.Series]:
    """``raw`` with every listed column typed (a value that is not what its column holds
    becomes missing), and per row the reason of its first bad value (``<NA>`` when clean).

    >>> raw = pd.DataFrame({"id": [1, 2, 3], "t": ["2026-01-01 08:00:00", "2026-01-01 08:00:00+02:00", "soon"],
    ...                     "v": [1.5, 2.0, "high"]})
    >>> typed, reasons = screen(raw, RawColumns(keys=("id",), times=("t",), numbers=("v",)))
    >>> reasons.tolist()
    [<NA>, 'time in t carries a time-zone offset (times are stored naive, in one clock)', 'v holds text where a number belongs']
    >>> typed["v"].tolist()
    [1.5, 2.0, nan]
    """
    frame = raw.copy()
    reasons = pd.Series(pd.NA, index=frame.index, dtype="string")

    def flag(bad: pd.Series, reason: str) -> None:
        reasons.loc[bad & reasons.isna()] = reason

    for column in columns.texts + columns.keys:
        if column in frame and frame[column].dtype == object:
            undecodable = frame[column].map(lambda v: isinstance(v, (bytes, bytearray))).astype(bool)
            if undecodable.any():
                flag(undecodable, f"text in {column} is not valid UTF-8")
                frame[column] = frame[column].where(~undecodable, None)
    for column in columns.keys:
        flag(frame[column].isna(), f"{column} is empty")
    integers = columns.integers + tuple(c for c in columns.keys if c not in columns.texts)
    for column in integers + columns.numbers:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            parsed = pd.to_numeric(frame[column].map(_number_or_none), errors="coerce")
            flag(frame[column].notna() & parsed.isna(), f"{column} holds text where a number belongs")
            frame[column] = parsed
    for column in integers:
        values = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        unusable = values.notna() & (~np.isfinite(values) | (values.abs() >= _INT64) | (values != values.round()))
        flag(unusable, f"{column} is not a whole number")
        frame[column] = values.where(~unusable).astype("Int64")
    for column in columns.times:
        frame[column], bad_offset, bad_time = _times(frame[column])
        flag(bad_offset, f"time in {column} carries a time-zone offset (times are stored naive, in one clock)")
        flag(bad_time, f"time in {column} is not a date and time")
    return frame, reasons


def _number_or_none(value):
    if isinstance(value, (bytes, bytearray)):
        return None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return value


def _times(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Naive ``datetime64[us]`` values, and which raw values had an offset or were no time."""
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        none = pd.Series(False, index=values.index)
        return values.astype("datetime64[us]"), none, none
    text = values.map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    present = text.notna()
    offset = present & text.str.contains(_OFFSET, regex=True, na=False)
    plain = text.where(present & ~offset)
    try:
        parsed = pd.to_datetime(plain, format="ISO8601", errors="coerce")
    except (ValueError, TypeError, OverflowError):  # an offset the pattern missed: value by value
        parsed = pd.Series([_one_time(v) for v in plain], index=plain.index, dtype="datetime64[us]")
    if getattr(parsed.dt, "tz", None) is not None:  # every value carried an offset the pattern missed
        offset = offset | parsed.notna()
        parsed = pd.Series(pd.NaT, index=plain.index, dtype="datetime64[us]")
    parsed = parsed.astype("datetime64[us]")
    return parsed, offset, present & ~offset & parsed.isna()


def _one_time(value):
    """One naive time, or NaT (an offset or anything else that is not a plain date and time)."""
    try:
        stamp = pd.Timestamp(value) if value is not None else pd.NaT
    except (ValueError, TypeError, OverflowError):
        return pd.NaT
    return pd.NaT if stamp is pd.NaT or stamp.tzinfo is not None else stamp
