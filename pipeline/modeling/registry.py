"""The model registry (``vigil_models.model_versions``) and the fitted bundles it points at."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import joblib
import pandas as pd

from pipeline.warehouse import Warehouse


@dataclass
class Bundle:
    """Everything scoring needs from one trained candidate; scoring never refits any of it."""

    model_name: str
    version: str
    candidate: str
    inputs: tuple[str, ...]
    spec_raw: dict
    model: object                      # fitted estimator (scikit-learn contract)
    text_encoder: dict | None          # source, max_tokens, pooling, encoder_id
    signal_encoders: dict              # modality -> SignalEncoder (trained network + input settings)
    training: dict                     # as_of, counts, split, encoder pre-training results

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "bundle.joblib"
        joblib.dump(self, path)
        return path


def load_bundle(artifact_uri: str) -> Bundle:
    path = Path(artifact_uri) / "bundle.joblib"
    if not path.exists():
        raise FileNotFoundError(f"model artifact {path} is missing: re-run `vigil train`")
    return joblib.load(path)


def register(wh: Warehouse, rows: list[dict], promote_version: str) -> None:
    """Add the candidates' versions and move the model's promoted flag, in one transaction."""
    frame = pd.DataFrame(rows)
    frame["promoted"] = frame["version"] == promote_version
    model_name = frame["model_name"].iloc[0]
    with wh.begin() as conn:
        wh.execute(conn, "UPDATE vigil_models.model_versions SET promoted = :no WHERE model_name = :name",
                   {"no": False, "name": model_name})
        wh.bulk_insert(conn, "vigil_models.model_versions", frame)


def promoted(wh: Warehouse, model_name: str) -> dict | None:
    rows = wh.read("SELECT * FROM vigil_models.model_versions WHERE model_name = :name AND promoted = :yes",
                   {"name": model_name, "yes": True})
    if rows.empty:
        return None
    row = rows.iloc[0].to_dict()
    row["metrics"] = json.loads(row.pop("metrics_json"))
    return row
