"""Event tables read once, in sequence, and split into subject shards on local disk.

A shard's own query reads its patients through the ``subject_id`` index. When a feed appends
rows in time order, a patient's rows lie on pages all over the table, so every shard touches
pages across the whole table; once the tables outgrow the page cache (about 100 M events on a
24 GB machine) each shard reads them from disk again. Reading each table once, in the order it
lies, and writing every record batch's rows to their shard's Arrow file costs one sequential
scan and a local write, whatever the row order: the shards then read their own files.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

from pipeline.store.warehouse import Warehouse, arrow_frame


class EventSpill:
    """Each spilled query's rows, one Arrow IPC file per shard, in the order the table gave them."""

    def __init__(self, folder: Path, edges: list[int], schemas: dict[str, pa.Schema]):
        self.folder = folder
        self.edges = edges
        self.schemas = schemas
        self.rows: dict[str, int] = {}

    def path(self, query: str, shard: int) -> Path:
        return self.folder / f"{query}.shard-{shard}.arrow"

    def holds(self, query: str) -> bool:
        return query in self.schemas

    def frame(self, query: str, shard: int) -> pd.DataFrame:
        """One shard's rows of a spilled query (its columns and types when it has none)."""
        path = self.path(query, shard)
        if not path.exists():
            return arrow_frame(self.schemas[query].empty_table())
        with pa.memory_map(str(path)) as source:
            return arrow_frame(ipc.open_stream(source).read_all())


def shard_index(subjects: pa.Array, edges: np.ndarray) -> np.ndarray:
    """The shard of each subject id: the shards are ``[edges[i-1], edges[i])``, the first and
    last open-ended (``subject_shards``' bounds).

    >>> shard_index(pa.array([1, 5, 6, 9], pa.int32()), np.array([5, 9])).tolist()
    [0, 1, 1, 2]
    """
    if subjects.null_count:
        raise ValueError("an event row without a subject id cannot be placed in a shard")
    return np.searchsorted(edges, subjects.to_numpy(zero_copy_only=False).astype(np.int64), side="right")


@contextmanager
def spilled(wh: Warehouse, queries: Iterable[str], params: dict, edges: list[int],
            folder: Path | None = None) -> Iterator[EventSpill]:
    """Every query in ``queries`` (``sql/extract``, for all subjects) read once as a stream of
    record batches and split into the shards of ``edges``; the files go when the block ends.

    ``folder`` defaults to a new directory under the system's temporary directory (``TMPDIR``):
    it needs about 60 bytes of disk per event row.
    """
    root = Path(tempfile.mkdtemp(prefix="vigil-spill-", dir=folder))
    bounds = np.asarray(edges, dtype=np.int64)
    spill = EventSpill(root, list(edges), {})
    try:
        for query in queries:
            writers: dict[int, ipc.RecordBatchStreamWriter] = {}
            rows = 0
            try:
                with wh.stream_arrow(wh.sql(f"extract/{query}"), params) as batches:
                    spill.schemas[query] = batches.schema
                    for batch in batches:
                        rows += batch.num_rows
                        _write_batch(batch, shard_index(batch.column("subject_id"), bounds), spill, query, writers)
            finally:
                for writer in writers.values():
                    writer.close()
            spill.rows[query] = rows
        yield spill
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _write_batch(batch: pa.RecordBatch, shards: np.ndarray, spill: EventSpill, query: str,
                 writers: dict[int, ipc.RecordBatchStreamWriter]) -> None:
    """A batch's rows appended to their shards' files, each shard's in the batch's order."""
    order = np.argsort(shards, kind="stable")
    grouped = batch.take(pa.array(order))
    present, starts, counts = np.unique(shards[order], return_index=True, return_counts=True)
    for shard, start, count in zip(present.tolist(), starts.tolist(), counts.tolist()):
        if shard not in writers:
            writers[shard] = ipc.new_stream(str(spill.path(query, shard)), batch.schema)
        writers[shard].write_batch(grouped.slice(start, count))
