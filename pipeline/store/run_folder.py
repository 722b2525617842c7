"""A run's folder: the Parquet, array and JSON files one run of a night hands from stage to
stage (``<home>/runs/<D>/<run>/<stage>/``), and the pointer to the night's current run."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline.config import Settings


class RunFolderError(OSError):
    """The night's working folder cannot be written (disk full, read-only, not a directory)."""


RUN_FOLDERS_KEPT_HOURS = 24  # an earlier run's folder of the same night is removed after this long


def run_key(run_id: str) -> str:
    """A run id as a folder name (Airflow's hold ``:`` and ``+``).

    >>> run_key("manual__2026-01-30T00:00:00+00:00")
    'manual__2026-01-30T00_00_00_00_00'
    """
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


@dataclass
class RunFolder:
    """Where one run of a night keeps its files, and the night's prediction time.

    Each run has its own folder, ``<home>/runs/<D>/<run>/<stage>/``, so two runs of one night
    (a manual re-run while the scheduled one works) never read each other's half-written files;
    ``runs/<D>/current`` names the run extracted last, which a stage given no run id works on.
    """

    settings: Settings
    night: date
    run_id: str | None = None

    def __post_init__(self) -> None:
        self._folder = None if self.run_id is None else self.night_folder / run_key(self.run_id)

    @property
    def prediction_time(self) -> datetime:
        return datetime.combine(self.night + timedelta(days=1), datetime.min.time())

    @property
    def night_folder(self) -> Path:
        return self.settings.run_dir(self.night.isoformat())

    @property
    def folder(self) -> Path:
        """This run's folder; without a run id, the night's current run, looked up once so a
        stage never reads one run's files and writes another's."""
        if self._folder is None:
            pointer = self.night_folder / "current"
            try:
                self._folder = self.night_folder / pointer.read_text().strip()
            except FileNotFoundError as error:
                raise FileNotFoundError(f"night {self.night} has not been extracted ({pointer} missing)") from error
            except OSError as error:
                raise RunFolderError(f"night {self.night}: cannot read {pointer}: {error.strerror or error}") from error
        return self._folder

    def start(self) -> None:
        """Begin this run's extraction in an empty ``extract`` folder; earlier runs' folders of the
        night in which nothing was written for a day are removed. The run's later stages keep
        their files until the extraction is done: an operator who clears ``extract`` alone
        re-extracts the same rows, and the stages not cleared with it (still ``success``) must
        still find what they wrote; :func:`extract_stage` removes them when the rows or models
        differ."""
        shutil.rmtree(self.folder / "extract", ignore_errors=True)
        self.path("extract", "")
        cutoff = datetime.now().timestamp() - RUN_FOLDERS_KEPT_HOURS * 3600
        for other in self.night_folder.iterdir():
            if other != self.folder and other.is_dir() and _last_written(other) < cutoff:
                shutil.rmtree(other, ignore_errors=True)

    def extracted_before(self) -> dict | None:
        """The manifest of this run's earlier extraction (a retry, or ``extract`` cleared), if any."""
        try:
            return json.loads((self.folder / "extract" / "manifest.json").read_text())
        except (OSError, ValueError):
            return None

    def extracted_sha256(self) -> str:
        """A digest of every file the extraction wrote (before its manifest)."""
        digest = hashlib.sha256()
        for path in sorted((self.folder / "extract").glob("*.parquet")):
            digest.update(path.name.encode())
            with path.open("rb") as stream:
                while block := stream.read(1 << 20):
                    digest.update(block)
        return digest.hexdigest()

    def clear_after(self, stage: str) -> None:
        """Remove this run's files of every stage but ``stage``."""
        for folder in self.folder.iterdir():
            if folder.is_dir() and folder.name != stage:
                shutil.rmtree(folder, ignore_errors=True)

    def make_current(self) -> None:
        """Name this run the night's current one (after its extraction is complete)."""
        pointer = self.night_folder / "current"
        staged = pointer.with_name(f".current-{uuid.uuid4().hex[:8]}")
        staged.write_text(self.folder.name)
        os.replace(staged, pointer)  # atomic: a reader sees the old run or the new one, never half

    def path(self, stage: str, name: str) -> Path:
        folder = self.folder / stage
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"night {self.night}: cannot create {folder}: {error.strerror or error} "
                                 f"(VIGIL_HOME must be a writable directory with free space)") from error
        return folder / name

    def write(self, stage: str, name: str, frame: pd.DataFrame) -> None:
        path = self.path(stage, f"{name}.parquet")
        try:
            frame.to_parquet(path, index=False)
        except OSError as error:
            raise RunFolderError(f"night {self.night}: cannot write {path}: {error.strerror or error} "
                                 f"(is the disk full?)") from error

    def write_part(self, stage: str, name: str, part: int, frame: pd.DataFrame) -> None:
        """One part of a file written in parts (``<name>.part-<k>.parquet``): a night whose rows
        are extracted and validated part by part of subjects, so no stage holds all at once."""
        self.write(stage, f"{name}.part-{part}", frame)

    def parts(self, stage: str, name: str) -> list[Path]:
        """The files holding ``<stage>/<name>``, in order: itself, or its parts."""
        whole = self.folder / stage / f"{name}.parquet"
        if whole.exists():
            return [whole]
        found = {int(p.name[len(name) + len(".part-"):-len(".parquet")]): p
                 for p in (self.folder / stage).glob(f"{name}.part-*.parquet")}
        if not found:
            raise FileNotFoundError(f"{whole} is missing: run the '{stage}' stage of night {self.night} first")
        if sorted(found) != list(range(len(found))):
            raise FileNotFoundError(f"{stage}/{name} of night {self.night} lacks parts (has {sorted(found)}): "
                                    f"run the '{stage}' stage again")
        return [found[k] for k in range(len(found))]

    def read(self, stage: str, name: str, filters=None, columns: list[str] | None = None) -> pd.DataFrame:
        """A stage's file (all its parts, in order); ``filters`` (pyarrow's, e.g. ``[("stay_id",
        ">=", 7)]``) and ``columns`` keep only what a reader needs of a large one."""
        frames = [pd.read_parquet(path, filters=filters, columns=columns) for path in self.parts(stage, name)]
        kept = [f for f in frames if len(f)] or frames[:1]   # an empty part can hold columns typed as object
        return kept[0] if len(kept) == 1 else pd.concat(kept, ignore_index=True)

    def clear_parts(self, stage: str, name: str) -> None:
        """Remove ``<stage>/<name>`` and its parts (before it is written again, maybe in other parts)."""
        for path in (self.folder / stage).glob(f"{name}.part-*.parquet"):
            path.unlink(missing_ok=True)
        (self.folder / stage / f"{name}.parquet").unlink(missing_ok=True)

    def read_part(self, stage: str, name: str, part: int) -> pd.DataFrame:
        return pd.read_parquet(self.parts(stage, name)[part])

    def read_parts(self, stage: str, name: str) -> Iterator[pd.DataFrame]:
        """``<stage>/<name>`` one part at a time (the whole file as one part when it has none)."""
        for path in self.parts(stage, name):
            yield pd.read_parquet(path)

    def rows(self, stage: str, name: str) -> int:
        """How many rows ``<stage>/<name>`` holds (from the files' metadata, nothing read)."""
        return sum(pq.ParquetFile(path).metadata.num_rows for path in self.parts(stage, name))

    def write_arrays(self, stage: str, name: str, **arrays: np.ndarray) -> None:
        """Arrays (e.g. a modality's pooled vectors and presence mask) as ``<stage>/<name>.npz``."""
        np.savez(self.path(stage, f"{name}.npz"), **arrays)

    def read_arrays(self, stage: str, name: str, missing: str) -> dict[str, np.ndarray]:
        """The arrays of ``<stage>/<name>.npz``; ``missing`` says what to run when the file is absent."""
        path = self.folder / stage / f"{name}.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: {missing}")
        with np.load(path) as stored:
            return {key: stored[key] for key in stored.files}

    def has(self, stage: str, name: str) -> bool:
        return (self.folder / stage / name).exists()

    def write_json(self, stage: str, name: str, value: dict) -> Path:
        path = self.path(stage, name)
        path.write_text(json.dumps(value, indent=2, default=str))
        return path

    def manifest(self) -> dict:
        path = self.folder / "extract" / "manifest.json"
        if not path.exists():
            raise FileNotFoundError(f"night {self.night} has not been extracted ({path} missing)")
        return json.loads(path.read_text())


def _last_written(folder: Path) -> float:
    """When anything in a run folder was last written (0 when it vanished meanwhile)."""
    try:
        return max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.rglob("*")])
    except OSError:
        return 0.0
