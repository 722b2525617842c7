"""The model registry (``vigil_models.model_versions``) and the fitted bundles it points at."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import joblib
import pandas as pd

from pipeline.config import stored_path
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


def code_version() -> str:
    """The git commit of the checkout that trains (``+dirty`` with uncommitted changes), else
    the installed package's version."""
    import subprocess
    from importlib.metadata import version

    from pipeline.config import PROJECT_ROOT

    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return f"vigil {version('vigil')}"


def load_bundle(artifact_uri: str, home: Path) -> Bundle:
    """The bundle a registry row points at (``artifact_uri`` relative to ``home``, or absolute)."""
    path = Path(home) / artifact_uri / "bundle.joblib"  # an absolute URI stays as it is
    if not path.exists():
        raise FileNotFoundError(f"model artifact {path} is missing: re-run `vigil train`")
    return joblib.load(path)


def register(wh: Warehouse, rows: list[dict], selected_version: str, promote: bool = False) -> None:
    """Add one training run's versions (its best marked ``selected``); with ``promote``, move
    the model's promoted flag to the selected version in the same transaction."""
    frame = pd.DataFrame(rows)
    frame["selected"] = frame["version"] == selected_version
    frame["promoted"] = frame["selected"] & promote
    frame["promoted_at"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us]")
    if promote:
        frame.loc[frame["promoted"], "promoted_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    model_name = frame["model_name"].iloc[0]
    with wh.begin() as conn:
        if promote:
            wh.execute(conn, "UPDATE vigil_models.model_versions SET promoted = :no WHERE model_name = :name",
                       {"no": False, "name": model_name})
        wh.bulk_insert(conn, "vigil_models.model_versions", frame)


def relative_paths(wh: Warehouse, home: Path) -> int:
    """Rewrite the registry's absolute paths inside ``home`` relative to it (idempotent): a home
    trained before paths were stored relative would otherwise keep loading from its old place
    after it moves. Returns the number of rows rewritten."""
    def relative(value) -> str | None:
        if value is None or pd.isna(value):
            return None
        return stored_path(value, home) if Path(value).is_absolute() else value

    rows = wh.read("SELECT model_name, version, artifact_uri, report_uri FROM vigil_models.model_versions")
    rewritten = 0
    with wh.begin() as conn:
        for row in rows.itertuples():
            recorded = (row.artifact_uri, None if pd.isna(row.report_uri) else row.report_uri)
            wanted = (relative(recorded[0]), relative(recorded[1]))
            if wanted != recorded:
                wh.execute(conn, "UPDATE vigil_models.model_versions SET artifact_uri = :artifact, "
                           "report_uri = :report WHERE model_name = :name AND version = :v",
                           {"artifact": wanted[0], "report": wanted[1], "name": row.model_name, "v": row.version})
                rewritten += 1
    return rewritten


def promote(wh: Warehouse, model_name: str, version: str | None = None, *, home: Path) -> dict:
    """Make ``version`` (default: the selected version of the model's latest training run) the
    one the nightly run scores with; returns its registry row."""
    if version is None:
        rows = wh.read("SELECT version FROM vigil_models.model_versions WHERE model_name = :name AND selected = :yes "
                       "ORDER BY trained_at DESC", {"name": model_name, "yes": True})
    else:
        rows = wh.read("SELECT version FROM vigil_models.model_versions WHERE model_name = :name AND version = :v",
                       {"name": model_name, "v": version})
    if rows.empty:
        known = wh.read("SELECT version FROM vigil_models.model_versions WHERE model_name = :name "
                        "ORDER BY trained_at DESC", {"name": model_name})["version"].tolist()
        raise ValueError(f"no version {version or '(selected)'} of model {model_name!r} in the registry; "
                         f"registered: {known[:10] or 'none: train it first (vigil train --spec ' + model_name + ')'}")
    chosen = rows["version"].iloc[0]
    load_bundle(wh.read("SELECT artifact_uri FROM vigil_models.model_versions WHERE model_name = :name "
                        "AND version = :v", {"name": model_name, "v": chosen})["artifact_uri"].iloc[0], home)
    with wh.begin() as conn:
        wh.execute(conn, "UPDATE vigil_models.model_versions SET promoted = :no WHERE model_name = :name",
                   {"no": False, "name": model_name})
        wh.execute(conn, "UPDATE vigil_models.model_versions SET promoted = :yes, promoted_at = :at "
                   "WHERE model_name = :name AND version = :v",
                   {"yes": True, "at": datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0),
                    "name": model_name, "v": chosen})
    return promoted(wh, model_name)


def promoted(wh: Warehouse, model_name: str) -> dict | None:
    rows = wh.read("SELECT * FROM vigil_models.model_versions WHERE model_name = :name AND promoted = :yes",
                   {"name": model_name, "yes": True})
    if rows.empty:
        return None
    row = rows.iloc[0].to_dict()
    row["metrics"] = json.loads(row.pop("metrics_json"))
    return row
