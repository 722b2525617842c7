"""Embedding records of every modality, with the cache, and pooling them per stay.

Records (notes, ECGs, images) are hashed by content, looked up in the cache, and only the
missing ones are decoded and encoded. Files are decoded in a torch ``DataLoader`` (worker
processes, pinned memory on CUDA); a file that cannot be read becomes a failure row with its
reason instead of stopping the night.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pipeline.embed import cache
from pipeline.embed.ecg import SIGNAL_CONDITIONING, EcgResNet, ecg_sha256, read_ecg
from pipeline.embed.imaging import IMAGE_CONDITIONING, ImageEncoder, image_sha256, read_image
from pipeline.embed.records import RecordError, text_sha256
from pipeline.filestore import FileStore
from pipeline.warehouse import Warehouse

MODALITY_TABLE = {"notes": "notes", "ecg": "ecgs", "images": "images"}
FAILURE_COLUMNS = ["source_table", "record_id", "stay_id", "reason", "check_name"]
DECODE_CHUNK = 8  # files a decode worker reads per hand-over


def state_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


@dataclass
class SignalEncoder:
    """A trained ECG or image network plus the input settings it was trained with."""

    modality: str  # "ecg" or "images"
    network: torch.nn.Module
    params: dict = field(default_factory=dict)

    @property
    def encoder_id(self) -> str:
        kind = f"ecg:resnet1d:{SIGNAL_CONDITIONING}" if self.modality == "ecg" else f"image:resnet:{IMAGE_CONDITIONING}"
        settings = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{kind}:{settings}@{state_digest(self.network)}"

    def read(self, path: Path) -> np.ndarray:
        if self.modality == "ecg":
            return read_ecg(path, target_fs=self.params["target_fs"], seconds=self.params["seconds"])
        return read_image(path, size=self.params["size"])

    @torch.inference_mode()
    def encode(self, arrays: np.ndarray | torch.Tensor, device: str, batch_size: int = 64) -> np.ndarray:
        self.network.to(device).eval()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") \
            else torch.autocast("cpu", enabled=False)
        tensor = torch.as_tensor(arrays)
        out = []
        for start in range(0, len(tensor), batch_size):
            batch = tensor[start:start + batch_size].to(device, non_blocking=True)
            with autocast:
                out.append(self.network.embed(batch).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.network.config["embedding_dim"]), np.float32)


def new_signal_encoder(modality: str, params: dict) -> SignalEncoder:
    """An ECG or image encoder from a spec's modality options.

    ``backbone`` (images): a local ``transformers`` checkpoint, frozen, under a new projection.
    ``weights``: a ``state_dict`` file saved from this same architecture (e.g. by another site's
    training run); loaded as is, and the training run then uses it without pre-training.
    Without either, the network starts from the seeded initialisation and is pre-trained.
    """
    torch.manual_seed(params.get("seed", 0))
    dim = params.get("embedding_dim", 32)
    if modality == "ecg":
        network = EcgResNet(width=params.get("width", 32), embedding_dim=dim)
    elif params.get("backbone"):
        network = ImageEncoder.pretrained(str(params["backbone"]), dim, size=params.get("size", 224))
    else:
        network = ImageEncoder.small(embedding_dim=dim, size=params.get("size", 64))
    if params.get("weights"):
        path = Path(params["weights"])
        if not path.exists():
            raise FileNotFoundError(f"{modality} encoder weights not found: {path}")
        network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    kept = {k: v for k, v in params.items() if k in ("target_fs", "seconds", "size")}
    if modality == "images":
        kept["size"] = params.get("size", 224 if params.get("backbone") else 64)
    if params.get("backbone"):
        kept["backbone"] = Path(str(params["backbone"])).name
    return SignalEncoder(modality=modality, network=network.eval(), params=kept)


def failure_rows(table: str, records: pd.DataFrame, reasons: list[str], check: str) -> pd.DataFrame:
    return pd.DataFrame({"source_table": table, "record_id": records["record_id"].astype("string").values,
                         "stay_id": records["stay_id"].astype("Int64").values, "reason": reasons,
                         "check_name": check}, columns=FAILURE_COLUMNS)


def hash_records(records: pd.DataFrame, modality: str, filestore: FileStore, *, workers: int = 0
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``content_hash``; records whose file is missing or unreadable become failures.
    ``workers`` > 1 hashes files on that many threads (hashlib and file reads release the GIL),
    so a GPU worker's cores hash a night's files in parallel rather than one after another."""
    table = MODALITY_TABLE[modality]
    records = records.copy()
    if modality == "notes":
        records["content_hash"] = [text_sha256(t) for t in records["text"]]
        return records, failure_rows(table, records.iloc[:0], [], "")
    hasher = ecg_sha256 if modality == "ecg" else image_sha256

    def hashed(uri: str) -> tuple[str | None, str | None]:
        try:
            return hasher(filestore.path(uri)), None
        except (RecordError, ValueError) as error:
            return None, getattr(error, "reason", str(error))

    uris = records["uri"].tolist()
    if workers > 1 and len(uris) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(hashed, uris, chunksize=16))
    else:
        outcomes = [hashed(uri) for uri in uris]
    records["content_hash"] = [h for h, _ in outcomes]
    bad = records["content_hash"].isna()
    failed = failure_rows(table, records[bad], [r for _, r in outcomes if r is not None], "read_file")
    return records[~bad].reset_index(drop=True), failed


class _FileDataset(Dataset):
    def __init__(self, paths: list[Path], encoder: SignalEncoder):
        self.paths, self.encoder = paths, encoder

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        try:
            return index, self.encoder.read(self.paths[index]), None
        except RecordError as error:
            return index, None, error.reason


def _collate(items):
    """One batch as ``(indices, stacked arrays, failures)``: stacking here, in the worker process,
    hands the DataLoader one tensor it can pin for an asynchronous copy to the GPU."""
    good = [(index, array) for index, array, _ in items if array is not None]
    stacked = torch.from_numpy(np.stack([a for _, a in good])) if good else torch.zeros(0)
    return [i for i, _ in good], stacked, [(index, reason) for index, array, reason in items if array is None]


def _decoded_batches(records: pd.DataFrame, encoder: SignalEncoder, filestore: FileStore, *, workers: int,
                    batch_size: int, device: str, progress: bool, desc: str):
    """Each distinct file decoded once, in batches of ``(content_hashes, tensor, {content_hash:
    reason})``: up to ``batch_size`` decoded arrays stacked, and why the others cannot be used.

    Workers decode ``DECODE_CHUNK`` files at a time and the chunks are gathered into batches, so
    the first batch is ready after one chunk per worker rather than a whole batch per worker.
    """
    unique = records.drop_duplicates("content_hash").reset_index(drop=True)
    dataset = _FileDataset([filestore.path(u) for u in unique["uri"]], encoder)
    pin = device.startswith("cuda")
    loader = DataLoader(dataset, batch_size=min(DECODE_CHUNK, batch_size), num_workers=workers,
                        collate_fn=_collate, prefetch_factor=8 if workers else None)
    hashes = unique["content_hash"].to_numpy()
    decoded, tensors, failed = [], [], {}

    def gathered():
        stacked = torch.cat(tensors) if tensors else torch.zeros(0)
        return decoded, stacked.pin_memory() if pin and tensors else stacked, failed

    for indices, stacked, failures in tqdm(loader, desc=desc, disable=not progress, unit="chunk"):
        failed.update({hashes[index]: reason for index, reason in failures})
        if indices:
            decoded.extend(hashes[indices])
            tensors.append(stacked)
        if len(decoded) >= batch_size:
            yield gathered()
            decoded, tensors, failed = [], [], {}
    if decoded or failed:
        yield gathered()


def decode_files(records: pd.DataFrame, encoder: SignalEncoder, filestore: FileStore, *, workers: int = 0,
                 progress: bool = False) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Decode each distinct file once: ``{content_hash: array}`` and ``{content_hash: reason}``."""
    arrays: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    for decoded, stacked, failures in _decoded_batches(records, encoder, filestore, workers=workers, batch_size=32,
                                                       device="cpu", progress=progress,
                                                       desc=f"Decoding {encoder.modality}"):
        arrays.update(zip(decoded, stacked.numpy()))
        failed.update(failures)
    return arrays, failed


def encode_files(records: pd.DataFrame, encoder: SignalEncoder, filestore: FileStore, *, device: str = "cpu",
                 workers: int = 0, batch_size: int = 64, progress: bool = False
                 ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Decode and encode each distinct file once, batch by batch as the DataLoader delivers them,
    so worker processes decode the next batches while this one runs the forward pass:
    ``{content_hash: vector}`` and ``{content_hash: reason}``."""
    vectors: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    for decoded, stacked, failures in _decoded_batches(records, encoder, filestore, workers=workers,
                                                       batch_size=batch_size, device=device, progress=progress,
                                                       desc=f"Embedding {encoder.modality}"):
        failed.update(failures)
        if decoded:
            vectors.update(zip(decoded, encoder.encode(stacked, device, batch_size=batch_size)))
    return vectors, failed


def embed_records(wh: Warehouse, modality: str, records: pd.DataFrame, encoder, filestore: FileStore, *,
                  device: str = "cpu", workers: int = 0, progress: bool = False
                  ) -> tuple[dict[str, np.ndarray], pd.DataFrame, int]:
    """Vectors for every record's ``content_hash`` (cache first), failures, and how many were new."""
    vectors = cache.lookup(wh, encoder.encoder_id, records["content_hash"].dropna().unique().tolist())
    todo = records[~records["content_hash"].isin(vectors)].drop_duplicates("content_hash")
    failed: dict[str, str] = {}
    new: dict[str, np.ndarray] = {}
    if modality == "notes" and not todo.empty:
        with tqdm(total=len(todo), desc="Embedding notes", disable=not progress, unit="note") as bar:
            new = dict(zip(todo["content_hash"], encoder.encode(todo["text"].tolist(), progress=bar)))
    elif not todo.empty:
        new, failed = encode_files(todo, encoder, filestore, device=device, workers=workers, progress=progress)
    cache.store(wh, encoder.encoder_id, modality, new)
    vectors.update(new)
    bad = records[records["content_hash"].isin(failed)]
    failures = failure_rows(MODALITY_TABLE[modality], bad, [failed[h] for h in bad["content_hash"]], "decode_file")
    return vectors, failures, len(new)


def stay_vectors(records: pd.DataFrame, vectors: dict[str, np.ndarray], prediction_times: pd.DataFrame,
                 dim: int, pooling: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Per (stay, prediction time): pooled vectors of records available then, and a presence mask.

    A record counts when both its time and its arrival time are at or before the prediction
    time. ``pooling`` is ``mean`` over those records or ``last`` (the most recent one).
    """
    keys = prediction_times[["stay_id", "prediction_time"]].reset_index(drop=True)
    keys["row"] = np.arange(len(keys))
    usable = records[records["content_hash"].isin(vectors)][["stay_id", "time", "arrival_time", "content_hash"]]
    usable = usable.astype({"stay_id": "int64"})
    joined = usable.merge(keys, on="stay_id")
    joined = joined[(joined["time"] <= joined["prediction_time"]) & (joined["arrival_time"] <= joined["prediction_time"])]
    matrix = np.zeros((len(keys), dim), dtype=np.float32)
    present = np.zeros(len(keys), dtype=bool)
    if joined.empty:
        return matrix, present
    # one order whatever order the records came in, so float sums (and scores) are reproducible
    joined = joined.sort_values(["row", "time", "content_hash"], kind="stable")
    if pooling == "last":
        joined = joined.drop_duplicates("row", keep="last")
    stacked = np.stack([vectors[h] for h in joined["content_hash"]])
    rows = joined["row"].to_numpy()
    counts = np.bincount(rows, minlength=len(keys)).astype(np.float32)
    np.add.at(matrix, rows, stacked)
    present = counts > 0
    matrix[present] /= counts[present, None]
    return matrix, present


def stay_embedding(records: pd.DataFrame, vectors: dict[str, np.ndarray], prediction_times: pd.DataFrame,
                   dim: int, options: dict) -> tuple[np.ndarray, np.ndarray]:
    """A modality's input to the models, by its spec ``pooling``: ``mean`` / ``last`` give one
    vector and a presence mask per row (:func:`stay_vectors`); ``attention`` and ``bilstm`` give
    the last ``max_records`` (default 5) vectors in time order and a per-record mask
    (:func:`stay_sequences`), which the model pools with learned attention weights or a BiLSTM."""
    pooling = options.get("pooling", "mean")
    if pooling in ("attention", "bilstm"):
        return stay_sequences(records, vectors, prediction_times, dim, int(options.get("max_records", 5)))
    return stay_vectors(records, vectors, prediction_times, dim, pooling)


def stay_sequences(records: pd.DataFrame, vectors: dict[str, np.ndarray], prediction_times: pd.DataFrame,
                   dim: int, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per (stay, prediction time): the vectors of its last ``max_length`` records available then,
    oldest first, for sequence models (a BiLSTM over a stay's notes). ``(n, max_length, dim)``
    float32 and an ``(n, max_length)`` mask; shorter histories are padded at the front, so the
    most recent record is always in the last position."""
    keys = prediction_times[["stay_id", "prediction_time"]].reset_index(drop=True)
    keys["row"] = np.arange(len(keys))
    sequences = np.zeros((len(keys), max_length, dim), dtype=np.float32)
    mask = np.zeros((len(keys), max_length), dtype=bool)
    usable = records[records["content_hash"].isin(vectors)][["stay_id", "time", "arrival_time", "content_hash"]]
    joined = usable.astype({"stay_id": "int64"}).merge(keys, on="stay_id")
    joined = joined[(joined["time"] <= joined["prediction_time"]) & (joined["arrival_time"] <= joined["prediction_time"])]
    if joined.empty:
        return sequences, mask
    joined = joined.sort_values(["row", "time", "content_hash"], kind="stable")
    from_end = joined.groupby("row").cumcount(ascending=False).to_numpy()
    keep = from_end < max_length
    rows, slots = joined["row"].to_numpy()[keep], max_length - 1 - from_end[keep]
    sequences[rows, slots] = np.stack([vectors[h] for h in joined["content_hash"].to_numpy()[keep]])
    mask[rows, slots] = True
    return sequences, mask
