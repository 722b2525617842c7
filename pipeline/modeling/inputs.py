"""What a model reads: the tabular feature frame plus, per embedded modality, one pooled vector
and a presence mask per row, or (attention pooling) a set of record vectors ``(rows, records,
dim)`` and a per-record mask ``(rows, records)``. Training and nightly scoring build it with the
same function."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


def presence(mask: np.ndarray) -> np.ndarray:
    """Per row, whether the modality carried any data (a row mask, or a per-record mask)."""
    mask = np.asarray(mask, dtype=bool)
    return mask if mask.ndim == 1 else mask.any(axis=tuple(range(1, mask.ndim)))


@dataclass
class ModelInputs:
    tabular: pd.DataFrame
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tabular)

    def take(self, rows) -> ModelInputs:
        rows = np.asarray(rows)
        return ModelInputs(
            tabular=self.tabular.iloc[rows].reset_index(drop=True),
            embeddings={m: v[rows] for m, v in self.embeddings.items()},
            masks={m: v[rows] for m, v in self.masks.items()},
        )

    def modalities_present(self) -> list[str]:
        """Per row, ``tabular+notes+...``: which inputs carried data."""
        names = ["tabular"] + sorted(self.masks)
        present = np.column_stack([np.ones(len(self), bool)] + [presence(self.masks[m]) for m in sorted(self.masks)])
        return ["+".join(n for n, p in zip(names, row) if p) for row in present]


def tabular_columns(spec) -> tuple[list[str], list[str]]:
    """(numeric, categorical) column names of the tabular input."""
    return list(spec.static_numeric) + spec.window_spec.columns(), list(spec.static_categorical)


def tabular_frame(spec, features: pd.DataFrame) -> pd.DataFrame:
    """The spec's tabular columns, numeric as float and categories as text ("unknown" if empty)."""
    numeric, categorical = tabular_columns(spec)
    missing = [c for c in numeric + categorical if c not in features.columns]
    if missing:
        raise ValueError(f"features lack column(s) the model {spec.name} needs: {missing[:5]}")
    frame = features[numeric].astype("float64").copy()
    for column in categorical:
        frame[column] = features[column].astype(object).where(features[column].notna(), "unknown").astype(str)
    return frame.reset_index(drop=True)


def build_inputs(spec, features: pd.DataFrame, stay_embeddings: dict[str, tuple[np.ndarray, np.ndarray]]) -> ModelInputs:
    return ModelInputs(
        tabular=tabular_frame(spec, features),
        embeddings={m: v for m, (v, _) in stay_embeddings.items()},
        masks={m: k for m, (_, k) in stay_embeddings.items()},
    )


def event_sequences(spec, events: pd.DataFrame, keys: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """An events modality's input: ``features.sequence`` tumbling windows of the spec's codes
    before each prediction time (``(rows, windows, codes)``, NaN where unmeasured) and which
    windows held any measurement, in the order of ``keys``."""
    from pipeline.features.windows import sequence_features

    options = spec.sequence
    return sequence_features(events, keys[["stay_id", "prediction_time"]], spec.window_spec.codes,
                             window_hours=int(options.get("window_hours", 6)), windows=int(options["windows"]),
                             aggregation=options.get("aggregation", "mean"))
