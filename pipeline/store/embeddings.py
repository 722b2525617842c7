"""The embedding cache in ``vigil_features.embeddings``: one vector per (encoder id, content
hash). A record is embedded once per encoder version; a new version re-embeds everything."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.store.warehouse import Warehouse


def lookup(wh: Warehouse, encoder_id: str, hashes: list[str]) -> dict[str, np.ndarray]:
    rows = wh.read_in(wh.query("features/embeddings"), hashes, {"encoder": encoder_id})
    return {h: np.frombuffer(bytes(v), dtype="<f4").copy() for h, v in zip(rows["content_hash"], rows["vector"])}


def store(wh: Warehouse, encoder_id: str, modality: str, vectors: dict[str, np.ndarray]) -> int:
    """Add vectors not yet cached (an existing key keeps its vector: same content, same output),
    except that a finite vector replaces a cached one that is not (cached before that was refused),
    so such a record is embedded again once, not every night."""
    if not vectors:
        return 0
    with wh.begin() as conn:
        wh.serialise_writers(conn)  # two nights embedding the same content: the second sees the first's rows
        present = lookup(wh, encoder_id, list(vectors))
        stale = [h for h, v in present.items() if not np.isfinite(v).all() and np.isfinite(vectors[h]).all()]
        new = {h: v for h, v in vectors.items() if h not in present or h in stale}
        if not new:
            return 0
        wh.delete_in(conn, "vigil_features.embeddings", "content_hash", stale, "encoder_id = :encoder",
                     {"encoder": encoder_id})
        frame = pd.DataFrame({
            "encoder_id": encoder_id,
            "content_hash": list(new),
            "modality": modality,
            "dim": [int(v.shape[0]) for v in new.values()],
            "vector": [np.asarray(v, dtype="<f4").tobytes() for v in new.values()],
        })
        return wh.bulk_insert(conn, "vigil_features.embeddings", frame)
