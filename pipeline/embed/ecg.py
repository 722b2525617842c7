"""12-lead ECGs: reading WFDB records and DICOM waveforms into a standard tensor, and the 1-D CNN encoder.

The reader normalises lead names and order to the 12 standard leads, resamples to the
encoder's rate, removes baseline wander and high-frequency noise with a 0.5-40 Hz band-pass,
and cuts or pads to a fixed length. Anything it cannot turn into that tensor raises
:class:`RecordError` with the reason the record is quarantined for.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pydicom
import torch
import wfdb
from scipy import signal as sps
from torch import nn

from pipeline.embed.records import RecordError, files_sha256

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_CANONICAL = {lead.upper(): lead for lead in STANDARD_LEADS}


def record_files(path: Path) -> list[Path]:
    """The header and data files of a WFDB record (``path`` without extension)."""
    header = path.with_name(path.name + ".hea")
    if not header.exists():
        raise RecordError("ECG file not found")
    files = [header] + [path.with_name(n) for n in _signal_files(header)]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise RecordError(f"WFDB data file missing: {', '.join(missing)}")
    return files


def _signal_files(header: Path) -> list[str]:
    """The data files a WFDB header names: the first field of each of its signal lines.

    Read directly rather than through ``wfdb.rdheader``, whose parser costs ~10 ms a header
    (most of a record's decode time), so hashing a record does not parse it.
    """
    try:
        lines = [line.strip() for line in header.read_text(encoding="ascii").splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
        signals = int(lines[0].split()[1])
        names = [line.split()[0] for line in lines[1:1 + signals]]
    except (UnicodeDecodeError, IndexError, ValueError) as error:
        raise RecordError(f"unreadable WFDB header ({type(error).__name__})") from error
    if len(names) != signals or any("/" in n or "\\" in n or n.startswith(".") for n in names):
        raise RecordError("unreadable WFDB header (signal lines do not name data files)")
    return list(dict.fromkeys(names))


def is_dicom_waveform(path: Path) -> bool:
    return path.suffix.lower() == ".dcm"


def ecg_sha256(path: Path) -> str:
    if is_dicom_waveform(path):
        if not path.exists():
            raise RecordError("ECG file not found")
        return files_sha256([path])
    return files_sha256(record_files(path))


_UNIT_TO_MV = {"mV": 1.0, "uV": 1e-3, "μV": 1e-3, "V": 1e3}


def read_dicom_waveform(path: Path) -> tuple[np.ndarray, list[str], float]:
    """``(samples, channels)`` in mV, channel names and sampling rate of a DICOM 12-lead ECG."""
    if not path.exists():
        raise RecordError("ECG file not found")
    try:
        ds = pydicom.dcmread(path)
    except Exception as error:  # pydicom raises several types for damaged files
        raise RecordError(f"not a readable DICOM file ({type(error).__name__})") from error
    if "WaveformSequence" not in ds:
        kind = getattr(ds, "SOPClassUID", None)
        raise RecordError(f"DICOM object holds no waveform ({kind.name if kind else 'unknown SOP class'})")
    group = next((i for i, w in enumerate(ds.WaveformSequence) if int(w.NumberOfWaveformChannels) >= 12), 0)
    waveform = ds.WaveformSequence[group]
    try:
        samples = ds.waveform_array(group).astype(np.float64)
    except Exception as error:
        raise RecordError(f"unreadable or truncated DICOM waveform ({type(error).__name__})") from error
    names, scale = [], []
    for channel in waveform.ChannelDefinitionSequence:
        meaning = str(channel.ChannelSourceSequence[0].CodeMeaning)
        names.append(meaning.replace("Lead", "").split("(")[0].strip())
        units = getattr(channel, "ChannelSensitivityUnitsSequence", None)
        scale.append(_UNIT_TO_MV.get(str(units[0].CodeValue) if units else "uV", 1e-3))
    return samples * np.asarray(scale), names, float(waveform.SamplingFrequency)


def read_leads(path: Path) -> tuple[np.ndarray, float]:
    """A record (WFDB, or a DICOM waveform ``.dcm``) as ``(samples, 12)`` in mV in the standard
    lead order, at its own sampling rate."""
    if is_dicom_waveform(path):
        signal, sig_names, fs = read_dicom_waveform(path)
        return _standard_leads(signal, sig_names), fs
    record_files(path)
    try:
        record = wfdb.rdrecord(str(path))
    except Exception as error:
        raise RecordError(f"unreadable or truncated WFDB record ({type(error).__name__})") from error
    if record.p_signal is None:
        raise RecordError("WFDB record holds no physical signal")
    return _standard_leads(record.p_signal, record.sig_name), float(record.fs)


def read_ecg(path: Path, target_fs: int = 100, seconds: float = 10.0) -> np.ndarray:
    """A record as the encoder's input: float32 ``(12, target_fs * seconds)`` in mV, standard lead
    order, resampled, band-passed and cut or padded to length."""
    signal, fs = read_leads(path)
    return condition_signal(signal, fs, target_fs, seconds)


def _standard_leads(signal: np.ndarray, sig_names) -> np.ndarray:
    names = [_CANONICAL.get(str(n).strip().upper()) for n in sig_names]
    missing = [lead for lead in STANDARD_LEADS if lead not in names]
    if missing:
        raise RecordError(f"wrong lead set: {len(sig_names)} leads, missing {', '.join(missing)}")
    return signal[:, [names.index(lead) for lead in STANDARD_LEADS]].astype(np.float64)


def condition_signal(raw: np.ndarray, fs: float, target_fs: int, seconds: float) -> np.ndarray:
    """Resample, band-pass and fix the length of a ``(samples, 12)`` signal in mV."""
    nan_share = float(np.isnan(raw).mean())
    if nan_share > 0.1:
        raise RecordError(f"signal is {nan_share:.0%} NaN")
    if nan_share:
        raw = np.nan_to_num(raw, nan=0.0)
    if raw.shape[0] < fs * seconds * 0.5:
        raise RecordError(f"signal too short ({raw.shape[0] / fs:.1f} s, need {seconds * 0.5:.0f} s)")
    ratio = Fraction(int(target_fs), int(round(fs))).limit_denominator(1000)
    resampled = sps.resample_poly(raw, ratio.numerator, ratio.denominator, axis=0)
    high = min(40.0, 0.45 * target_fs)
    sos = sps.butter(2, [0.5, high], btype="bandpass", fs=target_fs, output="sos")
    filtered = sps.sosfiltfilt(sos, resampled, axis=0)
    flat = (filtered.std(axis=0) < 1e-3).sum()
    if flat > 6:
        raise RecordError(f"flat-line signal ({flat} of 12 leads carry no activity)")
    length = int(target_fs * seconds)
    fixed = np.zeros((length, 12))
    fixed[: min(length, len(filtered))] = filtered[:length]
    return np.clip(fixed.T, -5, 5).astype(np.float32)


class _ResBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(channels_in, channels_out, 7, stride=stride, padding=3, bias=False),
            nn.BatchNorm1d(channels_out), nn.ReLU(),
            nn.Conv1d(channels_out, channels_out, 7, padding=3, bias=False), nn.BatchNorm1d(channels_out),
        )
        self.skip = nn.Sequential(nn.Conv1d(channels_in, channels_out, 1, stride=stride, bias=False),
                                  nn.BatchNorm1d(channels_out))

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class EcgResNet(nn.Module):
    """A small 1-D ResNet over 12-lead signals; ``embed`` gives the pooled representation."""

    def __init__(self, width: int = 32, embedding_dim: int = 32):
        super().__init__()
        self.config = {"width": width, "embedding_dim": embedding_dim}
        self.stem = nn.Sequential(nn.Conv1d(12, width, 15, stride=2, padding=7, bias=False),
                                  nn.BatchNorm1d(width), nn.ReLU())
        self.blocks = nn.Sequential(_ResBlock(width, width, 2), _ResBlock(width, 2 * width, 2),
                                    _ResBlock(2 * width, 2 * width, 2))
        self.project = nn.Linear(2 * width, embedding_dim)
        self.head = nn.Linear(embedding_dim, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.blocks(self.stem(x)).mean(dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.embed(x))).squeeze(-1)
