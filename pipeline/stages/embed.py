"""Stage 4, embed: a modality's records hashed, decoded and encoded under the isolation guard,
pooled per stay for each model that reads them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.config import Settings, resolve_device
from pipeline.embed.intervals import ecg_intervals
from pipeline.embed.isolation import Budget
from pipeline.embed.modalities import embed_records, hash_records, stay_embedding
from pipeline.embed.radiomics import RadiomicsExtractor
from pipeline.embed.text import TextEncoder
from pipeline.filestore import FileStore
from pipeline.modality import Modality
from pipeline.modeling import registry
from pipeline.modeling.inputs import presence
from pipeline.modeling.spec import parse_spec
from pipeline.stages.context import active_stays, each_shard, in_shard, night_context, sharded
from pipeline.store.run_folder import RunFolder
from pipeline.store import features as feature_store
from pipeline.store.warehouse import Warehouse


def embed_stage(night, settings: Settings | None = None, modality: str | None = None,
                run_id: str | None = None, shard: int | None = None) -> dict:
    """Embeddings of one modality (the DAG runs a task per modality, on the ``gpu`` queue, mapped
    over the night's shards) or of all, for one shard's stays or all. Per model and modality,
    ``embed/<model>.<modality>.shard-<k>.npz`` holds the pooled vector and a presence mask of
    every active stay of the shard; each record table gets the shard's usable records and its
    unreadable ones (with reasons) for publish."""
    if modality is not None and modality not in set(Modality):
        raise ValueError(f"unknown modality {modality!r}; modalities are {', '.join(Modality)}")
    ctx, wh = night_context(night, settings, run_id)
    modalities = [Modality(modality)] if modality else list(Modality)
    return each_shard(ctx, shard, lambda k: _shard_embeddings(wh, ctx, k, modalities))


def _shard_embeddings(wh: Warehouse, ctx: RunFolder, shard: int, modalities: list[Modality]) -> dict:
    manifest = ctx.manifest()
    device = resolve_device(ctx.settings.device)
    store = FileStore.from_settings(ctx.settings)
    budget = Budget.from_settings(ctx.settings)
    active = in_shard(ctx, active_stays(ctx), shard)
    history = feature_store.stay_records(wh, active["stay_id"].tolist(), ctx.night, ctx.prediction_time)
    bundles = {name: registry.load_bundle(info["artifact_uri"], ctx.settings.home)
               for name, info in manifest["models"].items()}
    summary = {}
    for current in modalities:
        table = current.table
        tonight, unreadable = hash_records(in_shard(ctx, ctx.read("validate", table), shard), current, store,
                                           workers=ctx.settings.decode_workers)
        failures = [unreadable]
        past = history[history["modality"] == current.stored]
        # a record re-sent tonight is tonight's version or nothing (quarantined), never its stale past one
        past = past[~past["record_id"].isin(ctx.read("extract", table)["record_id"].astype(str))]
        everything = pd.concat([tonight, past], ignore_index=True)
        for name, bundle in bundles.items():
            spec = parse_spec(bundle.spec_raw, name)
            for m in (m for m in bundle.inputs if m != "tabular" and spec.source(m) == current):
                records = spec.modality_records(m, everything)
                encoder = encoder_for(bundle, m, ctx.settings, device)
                embedded = embed_modality(wh, current, records, encoder, active, spec.modalities[m], store,
                                          ctx.settings, device=device, budget=budget)
                summary[f"{name}.{m}"] = {"records": len(records), "newly_embedded": embedded.new,
                                          "stays_with_data": int(presence(embedded.mask).sum())}
                if isinstance(encoder, RadiomicsExtractor):  # e.g. a CT without a tumour mask: this input's
                    # loss, not a bad record
                    ctx.write("embed", sharded(f"unmeasured_{name}.{m}", shard), embedded.failures)
                    summary[f"{name}.{m}"]["not_measured"] = len(embedded.failures)
                else:
                    failures.append(embedded.failures)
                ctx.write_arrays("embed", sharded(f"{name}.{m}", shard), stay_id=active["stay_id"].to_numpy(),
                                 vectors=embedded.vectors, mask=embedded.mask)
        failed = pd.concat(failures, ignore_index=True).drop_duplicates(["source_table", "record_id"])
        ctx.write("embed", sharded(f"failures_{table}", shard), failed)
        readable = tonight[~tonight["record_id"].isin(failed["record_id"])]
        ctx.write("embed", sharded(f"records_{table}", shard), readable)
        if current is Modality.ECG:
            intervals = ecg_intervals(wh, readable, store, workers=ctx.settings.decode_workers, budget=budget)
            ctx.write("embed", sharded("ecg_intervals", shard), intervals)
            summary["ecg_intervals_from_signal"] = int((intervals["measured_by"] == "signal").sum())
        summary[f"unreadable_{table}"] = len(failed)
    return summary


@dataclass
class Embedded:
    """A modality's model input for each (stay, prediction time) row, and what it cost."""

    vectors: np.ndarray      # (rows, dim), or (rows, records, dim) for a pooled-by-the-model set
    mask: np.ndarray         # presence per row (per record for a set)
    failures: pd.DataFrame   # records that could not be embedded, with the reason
    new: int                 # vectors computed now rather than found in the cache


def embed_modality(wh: Warehouse, source: str, records: pd.DataFrame, encoder, keys: pd.DataFrame, options: dict,
                   store: FileStore, settings: Settings, *, device: str, budget: Budget,
                   progress: bool = False) -> Embedded:
    """Hashed ``records`` of one source through ``encoder`` (the cache first), pooled per row of
    ``keys`` (stay, prediction time) by the spec's modality ``options``: the one path from records
    to a model input, for a night (the active stays at midnight) and for training (every example
    at its prediction time)."""
    vectors, failures, new = embed_records(wh, source, records, encoder, store, device=device,
                                           workers=settings.decode_workers, budget=budget, progress=progress)
    matrix, mask = stay_embedding(records, vectors, keys, encoder.dim, options)
    if getattr(encoder, "selected_columns", None) is not None:   # radiomics: the columns training selected
        matrix = encoder.select(matrix)
    return Embedded(matrix, mask, failures, new)


def encoder_for(bundle: registry.Bundle, modality: str, settings: Settings, device: str):
    if modality in bundle.signal_encoders:
        encoder = bundle.signal_encoders[modality]
        if isinstance(encoder, RadiomicsExtractor) and encoder.encoder_id != encoder.trained_with:
            raise RuntimeError(f"{bundle.model_name} {bundle.version} was trained on radiomics {encoder.trained_with}, "
                               f"but {encoder.encoder_id} is installed: retrain the model")
        return encoder
    trained = (bundle.text_encoders or {}).get(modality) or bundle.text_encoder
    encoder = TextEncoder.from_description(trained, batch_size=settings.embed_batch_size, device=device)
    if encoder.encoder_id != trained["encoder_id"]:
        raise RuntimeError(f"{bundle.model_name} {bundle.version} was trained with text encoder "
                           f"{trained['encoder_id']}, but {encoder.encoder_id} is installed: retrain the model")
    return encoder
