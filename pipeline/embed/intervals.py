"""Standard ECG interval measurements from the signal, with neurokit2, where the cart's are missing.

Lead II at the record's own rate is cleaned, its R peaks found and its waves delineated (the
prominence method: on LUDB's cardiologist-annotated record 1 it places PR, QRS and QT within
15 ms of the annotation, where the wavelet method is 90-130 ms off). Each interval is the median
over the beats: heart rate from the RR interval, PR (P onset to QRS onset), QRS (onset to
offset), QT (QRS onset to T offset) and Bazett's QTc (QT / sqrt(RR in s)). An interval the
delineation cannot place is NaN. Results are cached like embeddings, keyed by the record's
content hash and the measurer's id (which names the neurokit2 version): a record is measured once.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import neurokit2 as nk
import numpy as np
import pandas as pd
import torch

from pipeline.embed.ecg import STANDARD_LEADS, read_leads
from pipeline.embed.isolation import Budget
from pipeline.embed.modalities import embed_records
from pipeline.filestore import FileStore
from pipeline.store.warehouse import Warehouse

INTERVALS = ("heart_rate", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms")
LEAD = "II"


def measure_intervals(lead: np.ndarray, fs: float) -> np.ndarray:
    """``INTERVALS`` of one lead (mV at ``fs`` Hz) as float32; all NaN without three R peaks."""
    values = np.full(len(INTERVALS), np.nan, dtype=np.float32)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            cleaned = nk.ecg_clean(lead, sampling_rate=fs)
            _, info = nk.ecg_peaks(cleaned, sampling_rate=fs)
            peaks = np.asarray(info["ECG_R_Peaks"])
            if len(peaks) < 3:
                return values
            _, waves = nk.ecg_delineate(cleaned, peaks, sampling_rate=fs, method="prominence")
        except (ValueError, IndexError, ZeroDivisionError):  # neurokit2 on a signal it cannot delineate
            return values
    rr_s = float(np.median(np.diff(peaks))) / fs

    def span_ms(start: str, end: str) -> float:
        spans = (np.asarray(waves[end], float) - np.asarray(waves[start], float)) / fs * 1000
        spans = spans[np.isfinite(spans) & (spans > 0)]
        return float(np.median(spans)) if len(spans) else np.nan

    qt = span_ms("ECG_R_Onsets", "ECG_T_Offsets")
    values[:] = [60 / rr_s, span_ms("ECG_P_Onsets", "ECG_R_Onsets"), span_ms("ECG_R_Onsets", "ECG_R_Offsets"),
                 qt, qt / np.sqrt(rr_s)]
    return values


def measure_record(path: Path) -> np.ndarray:
    """``INTERVALS`` of a record's lead II."""
    signal, fs = read_leads(path)
    return measure_intervals(signal[:, STANDARD_LEADS.index(LEAD)], fs)


class IntervalMeasurer:
    """Reads a record and measures it. It has a signal encoder's ``reader`` / ``encode`` shape,
    so :func:`embed_records` caches, decodes (in the guarded decoder processes) and stores its
    measurements; an interval that cannot be placed stays NaN."""

    modality = "ecg"
    step = "ECG interval measurement"
    missing_values = True
    encoder_id = f"ecg-intervals:neurokit2={nk.__version__}:lead={LEAD}:prominence"
    reader = staticmethod(measure_record)

    def read(self, path: Path) -> np.ndarray:
        return measure_record(path)

    def encode(self, measured: torch.Tensor, device: str, batch_size: int = 64) -> np.ndarray:
        return measured.numpy()  # the measurement is made in ``read``


def ecg_intervals(wh: Warehouse, records: pd.DataFrame, filestore: FileStore, *, workers: int = 0,
                  budget: Budget = Budget()) -> pd.DataFrame:
    """Per record (``record_id``, ``stay_id``, ``time``, ``content_hash`` and the cart's
    ``rr_interval`` / ``qrs_duration``): the ``INTERVALS`` and ``measured_by`` ("cart" where the
    cart reported heart rate and QRS, whose values are kept; else "signal"). Records measured on
    an earlier night come from the cache."""
    values, _, _ = embed_records(wh, "ecg", records, IntervalMeasurer(), filestore, workers=workers, budget=budget)
    empty = np.full(len(INTERVALS), np.nan, dtype=np.float32)
    table = pd.DataFrame(np.stack([values.get(h, empty) for h in records["content_hash"]]) if len(records)
                         else np.zeros((0, len(INTERVALS))), columns=list(INTERVALS), dtype="float64")
    out = pd.concat([records[["record_id", "stay_id", "time"]].reset_index(drop=True), table], axis=1)
    missing = pd.Series(np.nan, index=records.index)
    rr = pd.to_numeric(records.get("rr_interval", missing), errors="coerce").reset_index(drop=True)
    qrs = pd.to_numeric(records.get("qrs_duration", missing), errors="coerce").reset_index(drop=True)
    cart = (rr > 0) & (qrs > 0)
    out.loc[cart, "heart_rate"] = 60000 / rr[cart]
    out.loc[cart, "qrs_ms"] = qrs[cart]
    out["measured_by"] = np.where(cart, "cart", "signal")
    return out
