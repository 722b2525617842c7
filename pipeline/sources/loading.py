"""Loading source tables (synthetic cohorts, the MIMIC-IV demo) into the warehouse.

A loader owns a set of subjects: it replaces exactly those subjects' rows, in one transaction,
and adds dictionary rows (d_items, d_labitems) only where the item id is new.
"""

from __future__ import annotations

import pandas as pd
from tqdm import tqdm

from pipeline.store.warehouse import Warehouse

DICTIONARIES = {"mimiciv_icu.d_items": "itemid", "mimiciv_hosp.d_labitems": "itemid"}


def replace_subject_rows(wh: Warehouse, tables: dict[str, pd.DataFrame], subject_ids: list[int],
                         progress: bool = True, keys: dict[str, str] | None = None) -> dict[str, int]:
    """Replace the given subjects' rows in every table (and merge dictionaries), in one
    transaction; row counts. ``keys`` names a table's subject column where it is not
    ``subject_id`` (Vigil tables keyed by a stay that is the subject's only one)."""
    ids = sorted({int(s) for s in subject_ids})
    written: dict[str, int] = {}
    with wh.begin() as conn:
        for table, frame in tqdm(tables.items(), desc="Loading source tables", disable=not progress, unit="table"):
            if table in DICTIONARIES:
                key = DICTIONARIES[table]
                present = set(wh.read_column(table, key, conn).tolist())
                frame = frame[~frame[key].isin(present)]
            else:
                wh.delete_in(conn, table, (keys or {}).get(table, "subject_id"), ids)
            written[table] = wh.bulk_insert(conn, table, frame)
    return written
