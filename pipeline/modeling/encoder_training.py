"""Supervised pre-training of the ECG and image encoders on the training split.

With no pretrained weights configured, an encoder learns the training label through a small
linear head, early-stopped on a patient-level inner split; its penultimate layer is then the
modality's embedding. Only training-split records are ever seen here.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupShuffleSplit
from torch import nn


def pretrain(network: nn.Module, arrays: np.ndarray, y: np.ndarray, groups: np.ndarray, *, epochs: int = 20,
             patience: int = 4, batch_size: int = 64, learning_rate: float = 2e-3, seed: int = 7,
             device: str = "cpu") -> dict:
    """Fit ``network`` (with ``embed`` and ``head``) in place; returns the inner-split AUROC."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    fit_rows, val_rows = next(GroupShuffleSplit(1, test_size=0.2, random_state=seed).split(y, y, groups))
    x = torch.from_numpy(arrays)
    target = torch.tensor(y, dtype=torch.float32)
    positives = max(1.0, float(y[fit_rows].sum()))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(fit_rows) - positives) / positives))
    network.to(device)
    trainable = [p for p in network.parameters() if p.requires_grad]  # a pretrained backbone stays frozen
    optimiser = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=1e-3)
    best, best_state, waited, epoch = -np.inf, None, 0, 0
    for epoch in range(1, epochs + 1):
        network.train()
        order = rng.permutation(fit_rows)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            if len(rows) < 2:  # batch norm needs two samples
                continue
            loss = loss_fn(network(x[rows].to(device)), target[rows].to(device))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        network.eval()
        with torch.inference_mode():
            logits = torch.cat([network(x[val_rows[s:s + 256]].to(device)).cpu()
                                for s in range(0, len(val_rows), 256)]).numpy()
        score = roc_auc_score(y[val_rows], logits) if len(set(y[val_rows])) > 1 else 0.0
        if score > best + 1e-4:
            best, waited = score, 0
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        else:
            waited += 1
            if waited >= patience:
                break
    network.load_state_dict(best_state)
    network.to("cpu").eval()
    return {"inner_auroc": round(float(best), 4), "epochs": epoch, "records": int(len(y))}
