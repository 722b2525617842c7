"""Attention pooling over a stay's set of record embeddings (several images of one patient).

Gated attention multiple-instance pooling (Ilse, Tomczak & Welling 2018): each present record
gets a score ``w . (tanh(V h) * sigmoid(U h))``, the scores are soft-maxed over the present
records, and the pooled vector is the weighted sum. It is trained with the model that reads it,
so the weights learn which of a patient's images carry the signal; padded slots get no weight,
and a row with no records pools to zeros.
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionPool(nn.Module):
    def __init__(self, dim: int, hidden: int = 32):
        super().__init__()
        self.v = nn.Linear(dim, hidden)
        self.u = nn.Linear(dim, hidden)
        self.w = nn.Linear(hidden, 1)

    def weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(rows, records)`` attention weights; each row sums to 1 over its present records."""
        scores = self.w(torch.tanh(self.v(x)) * torch.sigmoid(self.u(x))).squeeze(-1)
        scores = scores.masked_fill(mask <= 0, float("-inf"))
        return torch.nan_to_num(torch.softmax(scores, dim=1), nan=0.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` ``(rows, records, dim)`` and ``mask`` ``(rows, records)`` to ``(rows, dim)``."""
        return (self.weights(x, mask).unsqueeze(-1) * x).sum(dim=1)
