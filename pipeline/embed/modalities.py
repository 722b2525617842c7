"""Embedding records of every modality, with the cache, and pooling them per stay.

Records (notes, ECGs, images) are hashed by content, looked up in the cache, and only the
missing ones are decoded and encoded. Every per-record step runs under one guard
(``pipeline/embed/isolation.py``): files are opened only after the file store's rules, decoded
in decoder processes under a time and memory budget (batches pinned for the GPU), and encoded
in batches that fall back to one record at a time; a record that fails any step, or whose
vector is not finite, becomes a failure row with its reason instead of stopping the night, and
is never cached.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pipeline.store import embeddings as cache
from pipeline.embed.ecg import SIGNAL_CONDITIONING, EcgResNet, ecg_sha256, read_ecg, record_files
from pipeline.embed.imaging import IMAGE_CONDITIONING, ImageEncoder, image_sha256, read_image
from pipeline.embed.isolation import Budget, Isolated, guarded
from pipeline.embed.records import text_sha256
from pipeline.filestore import FileStore
from pipeline.modality import Modality
from pipeline.store.warehouse import Warehouse

FAILURE_COLUMNS = ["source_table", "record_id", "stay_id", "reason", "check_name"]
NOT_FINITE = "embedding is not finite (NaN or infinite values)"


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

    @property
    def dim(self) -> int:
        return self.network.config["embedding_dim"]

    @property
    def step(self) -> str:
        return "ECG decoding" if self.modality == "ecg" else "image decoding"

    @property
    def reader(self):
        """``path -> array``, picklable, for the decoder processes."""
        if self.modality == "ecg":
            return partial(read_ecg, target_fs=self.params["target_fs"], seconds=self.params["seconds"])
        return partial(read_image, size=self.params["size"])

    def read(self, path: Path) -> np.ndarray:
        return self.reader(path)

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

    ``backbone`` (images): a local ``transformers`` checkpoint, frozen, under a new projection;
    with ``shared_space``, a CLIP checkpoint's own image projection (the space its text shares).
    ``weights``: a ``state_dict`` file saved from this same architecture (e.g. by another site's
    training run); loaded as is, and the training run then uses it without pre-training.
    Without either, the network starts from the seeded initialisation and is pre-trained.
    """
    torch.manual_seed(params.get("seed", 0))
    dim = params.get("embedding_dim", 32)
    if modality == "ecg":
        network = EcgResNet(width=params.get("width", 32), embedding_dim=dim)
    elif params.get("backbone"):
        network = ImageEncoder.pretrained(str(params["backbone"]), dim, size=params.get("size", 224),
                                          shared_space=bool(params.get("shared_space")))
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
        if params.get("shared_space"):
            kept["shared_space"] = True
    return SignalEncoder(modality=modality, network=network.eval(), params=kept)


def failure_rows(table: str, records: pd.DataFrame, reasons: list[str], check: str) -> pd.DataFrame:
    return pd.DataFrame({"source_table": table, "record_id": records["record_id"].astype("string").values,
                         "stay_id": records["stay_id"].astype("Int64").values, "reason": reasons,
                         "check_name": check}, columns=FAILURE_COLUMNS)


def hash_records(records: pd.DataFrame, modality: str, filestore: FileStore, *, workers: int = 0
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``content_hash``; records whose file is missing, unreadable or breaks the file store's
    rules (outside the store, not a regular file, too large) become failures.
    ``workers`` > 1 hashes files on that many threads (hashlib and file reads release the GIL),
    so a GPU worker's cores hash a night's files in parallel rather than one after another."""
    table = Modality(modality).table
    records = records.copy()
    if modality == "notes":
        records["content_hash"] = [text_sha256(t) for t in records["text"]]
        return records, failure_rows(table, records.iloc[:0], [], "")
    hasher = ecg_sha256 if modality == "ecg" else image_sha256

    def hashed(uri: str) -> tuple[str | None, str | None]:
        return guarded("reading the file", lambda: hasher(filestore.path(uri), filestore))

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


def read_stored(uri: str, *, filestore: FileStore, modality: str, reader):
    """``reader`` of a record in the store, after the store's rules again (a record hashed on an
    earlier night may have been replaced by a link, a pipe or a giant since)."""
    path = filestore.path(uri)
    if modality == "ecg":
        record_files(path, filestore)
    else:
        filestore.regular(path, "DICOM file")
    return reader(path)


def _decoded_batches(records: pd.DataFrame, encoder, filestore: FileStore, *, workers: int, batch_size: int,
                     device: str, budget: Budget, progress: bool, desc: str):
    """Each distinct file decoded once, in batches of ``(content_hashes, tensor, {content_hash:
    reason})``: up to ``batch_size`` decoded arrays stacked (pinned for an asynchronous copy to
    a GPU), and why the others cannot be used.

    Decoder processes (at least one, ``workers`` when more) read the files under ``budget`` while
    this process encodes the previous batch.
    """
    unique = records.drop_duplicates("content_hash").reset_index(drop=True)
    hashes = unique["content_hash"].to_numpy()
    pin = device.startswith("cuda")
    decoded, arrays, failed = [], [], {}

    def gathered():
        stacked = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0)
        return decoded, stacked.pin_memory() if pin and arrays else stacked, failed

    read = partial(read_stored, filestore=filestore, modality=encoder.modality, reader=encoder.reader)
    with Isolated(budget, workers=workers) as isolated:
        for index, array, reason in tqdm(isolated.results(encoder.step, read, unique["uri"].tolist()),
                                         total=len(unique), desc=desc, disable=not progress, unit="file"):
            if reason is not None:
                failed[hashes[index]] = reason
                continue
            decoded.append(hashes[index])
            arrays.append(array)
            if len(decoded) >= batch_size:
                yield gathered()
                decoded, arrays, failed = [], [], {}
    if decoded or failed:
        yield gathered()


def decode_files(records: pd.DataFrame, encoder: SignalEncoder, filestore: FileStore, *, workers: int = 0,
                 budget: Budget = Budget(), progress: bool = False) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Decode each distinct file once: ``{content_hash: array}`` and ``{content_hash: reason}``."""
    arrays: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    for decoded, stacked, failures in _decoded_batches(records, encoder, filestore, workers=workers, batch_size=32,
                                                       device="cpu", budget=budget, progress=progress,
                                                       desc=f"Decoding {encoder.modality}"):
        arrays.update(zip(decoded, stacked.numpy()))
        failed.update(failures)
    return arrays, failed


def encode_guarded(encode, keys: list, inputs, step: str, finite: bool = True) -> tuple[dict, dict[str, str]]:
    """``encode(inputs)`` as ``{key: vector}``, and ``{key: reason}`` for the keys it could not
    embed: a batch that raises is retried one input at a time, so one input that breaks the
    encoder costs only itself; with ``finite``, a vector with NaN or infinite values is a
    failure, never a result."""
    vectors, reason = guarded(step, encode, inputs)
    if reason is not None:
        if len(keys) == 1:
            return {}, {keys[0]: reason}
        out, failed = {}, {}
        for i, key in enumerate(keys):
            one, bad = encode_guarded(encode, [key], inputs[i:i + 1], step, finite)
            out.update(one)
            failed.update(bad)
        return out, failed
    out, failed = {}, {}
    for key, vector in zip(keys, vectors):
        if not finite or np.isfinite(vector).all():
            out[key] = vector
        else:
            failed[key] = NOT_FINITE
    return out, failed


def _finite(encoder) -> bool:
    """Whether the encoder's vectors must be finite (measurements may hold NaN: not measurable)."""
    return not getattr(encoder, "missing_values", False)


def encode_files(records: pd.DataFrame, encoder: SignalEncoder, filestore: FileStore, *, device: str = "cpu",
                 workers: int = 0, batch_size: int = 64, budget: Budget = Budget(), progress: bool = False
                 ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Decode and encode each distinct file once, batch by batch as the decoder processes deliver
    them, so they decode the next batches while this one runs the forward pass:
    ``{content_hash: vector}`` and ``{content_hash: reason}``."""
    vectors: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    for decoded, stacked, failures in _decoded_batches(records, encoder, filestore, workers=workers,
                                                       batch_size=batch_size, device=device, budget=budget,
                                                       progress=progress, desc=f"Embedding {encoder.modality}"):
        failed.update(failures)
        if decoded:
            done, bad = encode_guarded(lambda batch: encoder.encode(batch, device, batch_size=batch_size),
                                       list(decoded), stacked, f"{encoder.modality} encoding", _finite(encoder))
            vectors.update(done)
            failed.update(bad)
    return vectors, failed


def embed_records(wh: Warehouse, modality: str, records: pd.DataFrame, encoder, filestore: FileStore, *,
                  device: str = "cpu", workers: int = 0, budget: Budget = Budget(), progress: bool = False
                  ) -> tuple[dict[str, np.ndarray], pd.DataFrame, int]:
    """Vectors for every record's ``content_hash`` (cache first), failures, and how many were new."""
    vectors = cache.lookup(wh, encoder.encoder_id, records["content_hash"].dropna().unique().tolist())
    if _finite(encoder):  # a cached vector that is not finite is embedded again
        vectors = {h: v for h, v in vectors.items() if np.isfinite(v).all()}
    todo = records[~records["content_hash"].isin(vectors)].drop_duplicates("content_hash")
    failed: dict[str, str] = {}
    new: dict[str, np.ndarray] = {}
    if modality == "notes" and not todo.empty:
        with tqdm(total=len(todo), desc="Embedding notes", disable=not progress, unit="note") as bar:
            new, failed = encode_guarded(lambda texts: encoder.encode(list(texts), progress=bar),
                                         todo["content_hash"].tolist(), todo["text"].to_numpy(), "note encoding")
    elif not todo.empty:
        new, failed = encode_files(todo, encoder, filestore, device=device, workers=workers, budget=budget,
                                   progress=progress)
    cache.store(wh, encoder.encoder_id, modality, new)
    vectors.update(new)
    bad = records[records["content_hash"].isin(failed)]
    failures = failure_rows(Modality(modality).table, bad, [failed[h] for h in bad["content_hash"]], "decode_file")
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
    present = counts > 0
    if np.isnan(stacked).any():   # measurements (radiomics): each feature the mean of the records that define it
        defined = np.zeros_like(matrix)
        np.add.at(defined, rows, np.isfinite(stacked).astype(np.float32))
        np.add.at(matrix, rows, np.nan_to_num(stacked, nan=0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            matrix = np.where(defined > 0, matrix / defined, np.nan).astype(np.float32)
        return matrix, present
    np.add.at(matrix, rows, stacked)
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
