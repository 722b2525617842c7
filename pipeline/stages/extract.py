"""Stage 1, extract: the rows that arrived since each table's watermark, as canonical frames,
with the run's manifest (the models it scores, the counts in)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from contextlib import closing
from datetime import datetime, timezone

from pipeline.config import Settings
from pipeline.modeling import registry
from pipeline.sources.mimic import Extraction, SubjectShard, extract_in_shards
from pipeline.stages.context import TABLES, as_night, night_context, promoted_models
from pipeline.store import runs
from pipeline.store.run_folder import RunFolder

log = logging.getLogger(__name__)


def _same_input(earlier: dict, manifest: dict) -> bool:
    """Whether two extractions of one run hand its later stages the same rows and models."""
    keys = ("prediction_time", "since", "models", "records_in", "extracted_sha256")
    return all(earlier.get(k) == manifest.get(k) for k in keys)


def extract_stage(night, settings: Settings | None = None, run_id: str | None = None) -> dict:
    ctx, wh = night_context(night, settings, run_id or f"{as_night(night)}-{uuid.uuid4().hex[:8]}")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    if ctx.prediction_time > now:
        raise ValueError(f"night {ctx.night} is not over until {ctx.prediction_time} UTC; "
                         f"score a night whose prediction time has passed")
    models = promoted_models(wh, ctx.settings)
    for info in models.values():
        info["spec"] = registry.load_bundle(info["artifact_uri"], ctx.settings.home).spec_raw
    earlier = ctx.extracted_before()
    ctx.start()
    since = runs.watermarks_before(wh, ctx.night)
    # the event tables' split files go in the extract folder, which a new try of the stage clears
    with closing(extract_in_shards(wh, ctx.prediction_time, ctx.settings.shard_rows, since,
                                   spill_dir=ctx.path("extract", ""))) as shards:
        records_in, parts = write_extraction(ctx, shards)
    manifest = {
        "run_id": ctx.run_id,
        "night": ctx.night.isoformat(), "prediction_time": ctx.prediction_time.isoformat(sep=" "),
        "started_at": now.replace(microsecond=0).isoformat(sep=" "),
        "since": {t: v.isoformat(sep=" ") for t, v in since.items()},
        "models": models,
        "records_in": records_in,
        "parts": parts,
    }
    manifest = json.loads(json.dumps(manifest, default=str))
    manifest["extracted_sha256"] = ctx.extracted_sha256()
    if earlier is not None and _same_input(earlier, manifest):
        log.info("night %s: run %s extracted again, the same rows for the same models: its later stages' files "
                 "stay", ctx.night, ctx.run_id)
    else:
        ctx.clear_after("extract")  # files of an earlier try made from other rows or models: never mixed in
    ctx.write_json("extract", "manifest.json", manifest)
    ctx.make_current()
    return {"run_id": manifest["run_id"], "records_in": manifest["records_in"]}


EXTRACTED = (*TABLES, "excluded", "quarantined")


def write_extraction(ctx: RunFolder,
                     shards: Iterable[tuple[SubjectShard, Extraction]]) -> tuple[dict[str, int], int]:
    """Every shard's frames as a part of each extract file (one shard: the files whole); the
    rows each table read, and the number of parts."""
    records_in = dict.fromkeys(TABLES, 0)
    count = 0
    for shard, extraction in shards:
        count += 1
        named = {**extraction.frames, "excluded": extraction.excluded, "quarantined": extraction.quarantined}
        for name in EXTRACTED:
            ctx.write_part("extract", name, shard.index, named[name])
        for table in TABLES:
            records_in[table] += extraction.records_in(table)
    if count == 1:   # the usual night: whole files, as every stage reads them
        for name in EXTRACTED:
            ctx.path("extract", f"{name}.part-0.parquet").rename(ctx.path("extract", f"{name}.parquet"))
    return records_in, count
