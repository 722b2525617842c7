"""What the PhysioNet/CinC challenge loaders share: reading record files from a folder or an
archive, placing undated ICU admissions on the calendar, and writing long-format measurements
into the MIMIC-IV event tables through ``vigil_features.source_item_map``."""

from __future__ import annotations

import tarfile
from datetime import date
from pathlib import Path

import pandas as pd

from pipeline.store.features import source_item_map
from pipeline.store.warehouse import Warehouse

DEFAULT_START = date(2025, 1, 1)
LABEVENT_STRIDE = 10_000   # labevent_id = record id * stride + row number within the record
EVENT_TABLES = ("mimiciv_icu.chartevents", "mimiciv_icu.outputevents", "mimiciv_hosp.labevents")


def record_files(path: Path, suffix: str):
    """``(file name, bytes)`` for every record file with ``suffix`` in a folder or a tar archive."""
    path = Path(path)
    if path.is_dir():
        for file in sorted(path.rglob(f"*{suffix}")):
            yield file.name, file.read_bytes()
    elif path.exists() and tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:  # in archive order: a compressed stream cannot seek back cheaply
            for member in archive:
                if member.isfile() and member.name.endswith(suffix):
                    yield Path(member.name).name, archive.extractfile(member).read()
    else:
        raise FileNotFoundError(f"{path}: neither a folder of {suffix} record files nor a tar archive of them")


def admission_times(record_ids: pd.Series, start: date = DEFAULT_START, days: int = 365) -> pd.Series:
    """Each record's ICU admission: a day within ``days`` of ``start`` and a minute of that day,
    both fixed by its id (so reloading or loading another set never moves a stay).

    >>> admission_times(pd.Series([132539])).tolist()
    [Timestamp('2025-02-14 11:01:00')]
    """
    ids = record_ids.astype("int64")
    base = pd.Timestamp(start)
    return (base + pd.to_timedelta(ids % days, unit="D")
            + pd.to_timedelta((ids * 7919) % 1440, unit="min")).astype("datetime64[us]")


def item_map(wh: Warehouse, source: str) -> pd.DataFrame:
    items = source_item_map(wh, source)
    if items.empty:
        raise RuntimeError(f"vigil_features.source_item_map has no {source} rows: run `vigil init`")
    return items


def event_tables(series: pd.DataFrame, items: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """MIMIC-IV event rows (and dictionary rows) from measurements already merged with the item
    map: record_id, charttime, itemid, target_table, valueuom, scale, valuenum (file units),
    value_text. Values are converted to the MIMIC unit (``* scale``)."""
    series = series.copy()
    series["valuenum"] = series["valuenum"] * series["scale"]
    series["value"] = series["valuenum"].map("{:g}".format).where(series["valuenum"].notna(), series["value_text"])
    tables = {}
    for target in EVENT_TABLES:
        part = series[series["target_table"] == target]
        rows = pd.DataFrame({"subject_id": part["record_id"].to_numpy(), "hadm_id": part["record_id"].to_numpy(),
                             "itemid": part["itemid"].astype("int64").to_numpy(),
                             "charttime": part["charttime"].to_numpy(), "storetime": pd.NaT,
                             "valueuom": part["valueuom"].to_numpy()})
        if target == "mimiciv_icu.outputevents":
            rows["stay_id"] = part["record_id"].to_numpy()
            rows["value"] = part["valuenum"].to_numpy()
        else:
            rows["valuenum"] = part["valuenum"].to_numpy()
            rows["value"] = part["value"].to_numpy()
            if target == "mimiciv_icu.chartevents":
                rows["stay_id"] = part["record_id"].to_numpy()
            else:
                rows["labevent_id"] = (part["record_id"] * LABEVENT_STRIDE + part.groupby("record_id").cumcount()).to_numpy()
        tables[target] = rows
    dictionary = items.drop_duplicates("itemid")
    charted = dictionary[dictionary["target_table"] != "mimiciv_hosp.labevents"]
    tables["mimiciv_icu.d_items"] = pd.DataFrame({
        "itemid": charted["itemid"], "label": charted["label"],
        "linksto": charted["target_table"].str.split(".").str[1], "unitname": charted["valueuom"]})
    labs = dictionary[dictionary["target_table"] == "mimiciv_hosp.labevents"]
    tables["mimiciv_hosp.d_labitems"] = pd.DataFrame({"itemid": labs["itemid"], "label": labs["label"], "fluid": "Blood"})
    return tables
