"""Clinical fields rendered as text and embedded by the text encoder: a modality of its own
beside the numerics, as the liver steatosis paper fed its CLIP-style model ("Age 54, male,
glucose 131 mg/dL, ...").

A spec's ``template`` names feature columns in ``str.format`` fields (``{age:.0f}``,
``{lab_glucose__last_24h:.0f}``); a field with no value renders as ``not measured``. Each row
(stay, prediction time) gets one text, so its vector is that text's, cached by content like
a note's.
"""

from __future__ import annotations

import string

import numpy as np
import pandas as pd

from pipeline.embed.modalities import embed_records
from pipeline.embed.records import text_sha256
from pipeline.filestore import FileStore
from pipeline.modeling.spec import template_fields
from pipeline.store.warehouse import Warehouse

NOT_MEASURED = "not measured"


class _ClinicalFormatter(string.Formatter):
    def format_field(self, value, format_spec: str) -> str:
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            return NOT_MEASURED
        return super().format_field(value, format_spec)


def render_texts(features: pd.DataFrame, template: str) -> list[str]:
    """One text per row of ``features``.

    >>> render_texts(pd.DataFrame({"age": [54.2, 71.0], "sex": ["M", "F"], "alt": [88.0, float("nan")]}),
    ...              "Age {age:.0f}, sex {sex}, ALT {alt:.0f} U/L")
    ['Age 54, sex M, ALT 88 U/L', 'Age 71, sex F, ALT not measured U/L']
    """
    formatter = _ClinicalFormatter()
    columns = template_fields(template)
    rows = features[columns].astype(object).where(features[columns].notna(), None).to_dict("records")
    return [formatter.format(template, **row) for row in rows]


def rendered_embedding(wh: Warehouse, features: pd.DataFrame, template: str, encoder, store: FileStore, *,
                       progress: bool = False) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Each row's rendered text through ``encoder`` (the embedding cache first): ``(rows, dim)``
    vectors, a presence mask (false where encoding failed) and the failures with their reasons."""
    texts = render_texts(features, template)
    hashes = [text_sha256(text) for text in texts]
    records = pd.DataFrame({"record_id": hashes, "stay_id": features["stay_id"].astype("Int64").to_numpy(),
                            "text": texts, "content_hash": hashes})
    vectors, failures, _ = embed_records(wh, "notes", records, encoder, store, progress=progress)
    failures = failures.assign(source_table="rendered text", check_name="encode")   # no record table behind it
    matrix = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    mask = np.array([h in vectors for h in hashes], dtype=bool)
    if mask.any():
        matrix[mask] = np.stack([vectors[h] for h, present in zip(hashes, mask) if present])
    return matrix, mask, failures
