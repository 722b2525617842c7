"""Pooling a stay's records inside the model that reads them: attention over a set (several
images of one patient), or a BiLSTM over a time-ordered sequence (a stay's notes).

Gated attention multiple-instance pooling (Ilse, Tomczak & Welling 2018): each present record
gets a score ``w . (tanh(V h) * sigmoid(U h))``, the scores are soft-maxed over the present
records, and the pooled vector is the weighted sum. It is trained with the model that reads it,
so the weights learn which of a patient's images carry the signal; padded slots get no weight,
and a row with no records pools to zeros.

The BiLSTM reads the sequences that ``stay_sequences`` builds (oldest first, padded at the
front so the latest record is last); it left-aligns each row and packs it, so padding never
enters the recurrence, and returns the final forward and backward states: unlike the attention
pool, it sees order (a worsening trend differs from an improving one).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


class AttentionPool(nn.Module):
    def __init__(self, dim: int, hidden: int = 32):
        super().__init__()
        self.v = nn.Linear(dim, hidden)
        self.u = nn.Linear(dim, hidden)
        self.w = nn.Linear(hidden, 1)
        self.out_dim = dim

    def weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(rows, records)`` attention weights; each row sums to 1 over its present records."""
        scores = self.w(torch.tanh(self.v(x)) * torch.sigmoid(self.u(x))).squeeze(-1)
        scores = scores.masked_fill(mask <= 0, float("-inf"))
        return torch.nan_to_num(torch.softmax(scores, dim=1), nan=0.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` ``(rows, records, dim)`` and ``mask`` ``(rows, records)`` to ``(rows, dim)``."""
        return (self.weights(x, mask).unsqueeze(-1) * x).sum(dim=1)


class BiLSTMPool(nn.Module):
    def __init__(self, dim: int, hidden: int = 32):
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` ``(rows, steps, dim)`` front-padded, ``mask`` ``(rows, steps)`` to ``(rows, 2 * hidden)``."""
        rows, steps, _ = x.shape
        lengths = (mask > 0).sum(dim=1)
        start = steps - lengths  # first real step of each row
        index = (torch.arange(steps, device=x.device)[None, :] + start[:, None]) % steps
        aligned = torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[2]))
        packed = pack_padded_sequence(aligned, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        final = torch.cat([hidden[0], hidden[1]], dim=1)
        return final * (lengths > 0)[:, None]
