"""Held-out ablations of a fitted candidate: what each modality adds, read the way the
multimodal papers report it."""

from __future__ import annotations

import numpy as np

from pipeline.modeling.inputs import ModelInputs, presence
from pipeline.modeling.metrics import primary_metric, task_metrics
from pipeline.modeling.spec import ModelSpec


def ablation(spec: ModelSpec, kind: str, model, inputs: ModelInputs, y: np.ndarray) -> dict[str, float]:
    """Late fusion: each single modality's stacker alone; other candidates: each modality withheld."""
    if kind == "late_fusion":
        return single_modalities(spec, model, inputs, y)
    return withheld_modalities(spec, model, inputs, y)


def single_modalities(spec: ModelSpec, model, inputs: ModelInputs, y: np.ndarray) -> dict[str, float]:
    """A late-fusion candidate's held-out primary metric on the rows that have every modality,
    fused and from each single modality's stacker alone (the ablation of the papers)."""
    complete = model.complete_cases(inputs)
    if len(complete) < 10:
        return {}
    subset = inputs.take(complete)
    out = {"all modalities (complete cases)": primary_metric(spec, task_metrics(spec, model, subset, y[complete])[0])}
    for modality in model.modalities:
        if (modality,) in model.fusion_.stackers_:
            single = task_metrics(spec, model, subset, y[complete], only=(modality,))[0]
            out[f"only {modality}"] = primary_metric(spec, single)
    return out


def withheld_modalities(spec: ModelSpec, model, inputs: ModelInputs, y: np.ndarray) -> dict[str, float]:
    """A model's held-out primary metric with each embedded modality withheld (mask set to
    absent), and on the patients who have every modality."""
    if not inputs.masks:
        return {}
    out = {}
    for m in inputs.masks:
        withheld = ModelInputs(inputs.tabular, inputs.embeddings, {**inputs.masks, m: np.zeros_like(inputs.masks[m])})
        out[f"without {m}"] = primary_metric(spec, task_metrics(spec, model, withheld, y)[0])
    complete = np.flatnonzero(np.all([presence(mask) for mask in inputs.masks.values()], axis=0))
    if len(complete) >= 10:  # the rows a late-fusion ablation is read on
        out["all modalities (complete cases)"] = primary_metric(
            spec, task_metrics(spec, model, inputs.take(complete), y[complete])[0])
    return {k: v for k, v in out.items() if v is not None}
