"""The embedding cache in ``vigil_features.embeddings``: one vector per (encoder id, content
hash). A record is embedded once per encoder version; a new version re-embeds everything."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, text

from pipeline.warehouse import Warehouse

_CHUNK = 900  # keeps IN lists under SQLite's bound-parameter limit


def lookup(wh: Warehouse, encoder_id: str, hashes: list[str]) -> dict[str, np.ndarray]:
    wanted = sorted(set(hashes))
    found: dict[str, np.ndarray] = {}
    query = text("SELECT content_hash, vector FROM vigil_features.embeddings "
                 "WHERE encoder_id = :encoder AND content_hash IN :hashes").bindparams(
        bindparam("hashes", expanding=True))
    with wh.engine.connect() as conn:
        for start in range(0, len(wanted), _CHUNK):
            rows = conn.execute(query, {"encoder": encoder_id, "hashes": wanted[start:start + _CHUNK]})
            for content_hash, vector in rows:
                found[content_hash] = np.frombuffer(bytes(vector), dtype="<f4").copy()
    return found


def store(wh: Warehouse, encoder_id: str, modality: str, vectors: dict[str, np.ndarray]) -> int:
    """Add vectors not yet cached (an existing key keeps its vector: same content, same output)."""
    if not vectors:
        return 0
    present = lookup(wh, encoder_id, list(vectors))
    new = {h: v for h, v in vectors.items() if h not in present}
    if not new:
        return 0
    frame = pd.DataFrame({
        "encoder_id": encoder_id,
        "content_hash": list(new),
        "modality": modality,
        "dim": [int(v.shape[0]) for v in new.values()],
        "vector": [np.asarray(v, dtype="<f4").tobytes() for v in new.values()],
    })
    with wh.begin() as conn:
        return wh.bulk_insert(conn, "vigil_features.embeddings", frame)
