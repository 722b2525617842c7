"""Stage 5, score: each promoted model over the active stays its cohort enrols."""

from __future__ import annotations

import logging

import numpy as np

from pipeline.config import Settings, resolve_device
from pipeline.embed.rendered import rendered_embedding
from pipeline.filestore import FileStore
from pipeline.modeling import registry
from pipeline.modeling.inputs import build_inputs
from pipeline.modeling.spec import parse_spec
from pipeline.score import score_stays
from pipeline.sources.mimic import read_enrolment
from pipeline.stages.context import active_stays, each_shard, in_shard, night_context, sharded
from pipeline.stages.embed import encoder_for

log = logging.getLogger(__name__)


def night_models(night, settings: Settings | None = None, run_id: str | None = None) -> list[str]:
    """The models the night scores (those promoted when it was extracted)."""
    ctx, _ = night_context(night, settings, run_id)
    return sorted(ctx.manifest()["models"])


def score_stage(night, settings: Settings | None = None, model: str | None = None,
                run_id: str | None = None, shard: int | None = None) -> dict:
    """Score tonight's active stays enrolled in each model's cohort with its promoted version
    (one model and one shard: the DAG maps a task over every pair); ``score/risk.<model>.shard-<k>``
    each."""
    ctx, wh = night_context(night, settings, run_id)
    manifest = ctx.manifest()
    if model is not None and model not in manifest["models"]:
        raise ValueError(f"model {model!r} has no promoted version in night {ctx.night}'s manifest "
                         f"({', '.join(manifest['models'])})")
    names = [model] if model else list(manifest["models"])
    return each_shard(ctx, shard, lambda k: {name: _score_shard(wh, ctx, manifest, name, k) for name in names})


def _score_shard(wh, ctx, manifest: dict, name: str, shard: int) -> dict:
    active = in_shard(ctx, active_stays(ctx), shard)
    bundle = registry.load_bundle(manifest["models"][name]["artifact_uri"], ctx.settings.home)
    spec = parse_spec(bundle.spec_raw, name)
    features = ctx.read("features", sharded(name, shard))
    if not np.array_equal(features["stay_id"].to_numpy(), active["stay_id"].to_numpy()):
        raise RuntimeError(f"features of night {ctx.night} shard {shard} are stale: re-run the features stage")
    enrolled = read_enrolment(wh, spec.cohort_query, ctx.prediction_time)
    keep = np.ones(len(active), bool) if enrolled is None else active["stay_id"].isin(
        enrolled.loc[enrolled["enrolled_time"] <= ctx.prediction_time, "stay_id"]).to_numpy()
    embedded = {}
    for modality in (m for m in bundle.inputs if m != "tabular"):
        if spec.source(modality) == "rendered":  # from tonight's features, so here rather than in embed
            embedded[modality] = _rendered(wh, ctx, bundle, spec, modality, features, keep)
            continue
        arrays = ctx.read_arrays("embed", sharded(f"{name}.{modality}", shard),
                                 f"run the embed stage ({modality}) of night {ctx.night}")
        if not np.array_equal(arrays["stay_id"], active["stay_id"].to_numpy()):
            raise RuntimeError(f"{modality} embeddings of night {ctx.night} are stale: re-run the embed stage")
        embedded[modality] = (arrays["vectors"], arrays["mask"])
    inputs = build_inputs(spec, features, embedded)
    rows = score_stays(bundle, spec, inputs.take(np.flatnonzero(keep)), active[keep], ctx.night)
    ctx.write("score", sharded(f"risk.{name}", shard), rows)
    ctx.write("score", sharded(f"enrolled.{name}", shard), active.loc[keep, ["stay_id"]])
    return {"version": bundle.version, "scored": len(rows), "not_in_cohort": int((~keep).sum())}


def _rendered(wh, ctx, bundle: registry.Bundle, spec, modality: str, features,
              keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A rendered-text modality of the active stays the model scores (``keep``; absent for the
    others): their features through the template, then the text encoder the model was trained
    with. A text that cannot be encoded leaves the modality absent for that stay (its risk row
    then names the modalities it was scored from)."""
    encoder = encoder_for(bundle, modality, ctx.settings, resolve_device(ctx.settings.device))
    rows = np.flatnonzero(keep)
    kept, kept_mask, failed = rendered_embedding(wh, features.iloc[rows], spec.modalities[modality]["template"],
                                                 encoder, FileStore.from_settings(ctx.settings))
    vectors = np.zeros((len(features), kept.shape[1]), dtype=np.float32)
    mask = np.zeros(len(features), dtype=bool)
    vectors[rows], mask[rows] = kept, kept_mask
    if len(failed):
        log.warning("%s: %d rendered texts of night %s could not be encoded (%s); scored without %s",
                    bundle.model_name, len(failed), ctx.night, failed["reason"].iloc[0], modality)
    return vectors, mask
