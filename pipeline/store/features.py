"""What earlier nights stored about each stay: events and records (``vigil_features.stay_events``
and ``stay_records``, read at a prediction time as they had arrived), published window features,
reference severity scores and the source item maps."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd

from pipeline.store.warehouse import Warehouse, to_time


def stays_with_data(wh: Warehouse, stays: list[int], night: date, at: datetime) -> set[int]:
    """Those of ``stays`` with an event or a record stored by an earlier night, taken and arrived
    by ``at``."""
    found: set[int] = set()
    for query in ("features/stays_with_events", "features/stays_with_records"):
        missing = [s for s in stays if s not in found]
        if missing:
            found |= set(wh.read_in(wh.query(query), missing, {"night": night, "t": at})["stay_id"].astype(int))
    return found


def stays_with_events_between(wh: Warehouse, stays: list[int], night: date, low: datetime,
                              high: datetime) -> list[int]:
    """Those of ``stays`` with a stored event (earlier nights) charted in ``(low, high]``."""
    return wh.read_in(wh.query("features/stays_with_events_between"), stays,
                      {"night": night, "low": low, "high": high})["stay_id"].tolist()


def stay_events(wh: Warehouse, stays: list[int], night: date, at: datetime,
                since: datetime | None = None) -> pd.DataFrame:
    """Events of ``stays`` stored by earlier nights and arrived by ``at``, charted after ``since``
    (None: all), in (stay, time, value) order."""
    params = {"night": night, "t": at, **({} if since is None else {"since": since})}
    query = wh.query("features/stay_events" if since is None else "features/stay_events_since")
    stored = wh.read_arrow(query, params, [int(s) for s in stays]).to_pandas()
    for column in ("time", "arrival_time"):
        stored[column] = to_time(stored[column])
    return stored


def stay_records(wh: Warehouse, stays: list[int], night: date, at: datetime) -> pd.DataFrame:
    """Records of ``stays`` stored by earlier nights and arrived by ``at``."""
    return wh.read_in(wh.query("features/stay_records"), stays, {"night": night, "t": at},
                      times=("time", "arrival_time"))


def stay_features(wh: Warehouse, night: date, stays: list[int]) -> pd.DataFrame:
    """The window features published for ``night`` of ``stays``, long form (stay_id, feature, value)."""
    return wh.read_arrow(wh.query("features/stay_features"), {"night": night}, [int(s) for s in stays]).to_pandas()


def reference_scores(wh: Warehouse, stays: list[int]) -> pd.DataFrame:
    """Severity scores (SAPS-I, SOFA, ...) the source shipped for ``stays``, long form (empty
    where the table does not exist)."""
    if not wh.table_exists("vigil_features.reference_scores"):
        return pd.DataFrame(columns=["stay_id", "score", "value"])
    return wh.read_in(wh.query("features/reference_scores"), [int(s) for s in stays])


def concept_map(wh: Warehouse) -> pd.DataFrame:
    return wh.read(wh.query("features/concept_map"))


def source_item_map(wh: Warehouse, source: str) -> pd.DataFrame:
    return wh.read(wh.query("features/source_item_map"), {"source": source})
