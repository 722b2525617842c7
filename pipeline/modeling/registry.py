"""The model registry (``vigil_models.model_versions``) and the fitted bundles it points at."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import joblib
import pandas as pd

from pipeline.config import stored_path
from pipeline.store import registry as stored_registry
from pipeline.store.warehouse import Warehouse


@dataclass
class Bundle:
    """Everything scoring needs from one trained candidate; scoring never refits any of it."""

    model_name: str
    version: str
    candidate: str
    inputs: tuple[str, ...]
    spec_raw: dict
    model: object                      # fitted estimator (scikit-learn contract)
    text_encoder: dict | None          # source, max_tokens, pooling, encoder_id (the spec-wide text encoder)
    signal_encoders: dict              # modality -> SignalEncoder (trained network + input settings)
    training: dict                     # as_of, counts, split, encoder pre-training results
    text_encoders: dict | None = None  # modality -> its own text encoder (a modality's text_encoder option)

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
    stored_registry.add_versions(wh, frame, demote=promote)


def relative_paths(wh: Warehouse, home: Path) -> int:
    """Rewrite the registry's absolute paths inside ``home`` relative to it (idempotent): a home
    trained before paths were stored relative would otherwise keep loading from its old place
    after it moves. Returns the number of rows rewritten."""
    def relative(value) -> str | None:
        if value is None or pd.isna(value):
            return None
        return stored_path(value, home) if Path(value).is_absolute() else value

    rewritten = []
    for row in stored_registry.paths(wh).itertuples():
        recorded = (row.artifact_uri, None if pd.isna(row.report_uri) else row.report_uri)
        wanted = (relative(recorded[0]), relative(recorded[1]))
        if wanted != recorded:
            rewritten.append({"model_name": row.model_name, "version": row.version,
                              "artifact_uri": wanted[0], "report_uri": wanted[1]})
    stored_registry.set_paths(wh, rewritten)
    return len(rewritten)


def promote(wh: Warehouse, model_name: str, version: str | None = None, *, home: Path) -> dict:
    """Make ``version`` (default: the selected version of the model's latest training run) the
    one the nightly run scores with; returns its registry row."""
    chosen = (stored_registry.selected_versions(wh, model_name) or [None])[0] if version is None else version
    row = None if chosen is None else stored_registry.version(wh, model_name, chosen)
    if row is None:
        known = stored_registry.versions(wh, model_name)
        raise ValueError(f"no version {version or '(selected)'} of model {model_name!r} in the registry; "
                         f"registered: {known[:10] or 'none: train it first (vigil train --spec ' + model_name + ')'}")
    load_bundle(row["artifact_uri"], home)
    stored_registry.set_promoted(wh, model_name, chosen, datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0))
    return promoted(wh, model_name)


def promoted(wh: Warehouse, model_name: str) -> dict | None:
    """The registry row of the model's promoted version, its metrics parsed (None: none promoted)."""
    return stored_registry.promoted(wh, model_name)
