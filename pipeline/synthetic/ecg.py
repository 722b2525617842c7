"""Synthetic 12-lead ECGs: a sum-of-Gaussians beat template per lead, placed at jittered
R peaks, with ST elevation, QRS widening and T inversion driven by the ECG risk factor."""

from __future__ import annotations

import numpy as np

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
FS = 500
SECONDS = 10

# P, Q, R, S, T amplitudes (mV) per lead, roughly a normal adult ECG
_AMPLITUDES = np.array([
    [0.10, -0.05, 0.60, -0.10, 0.20],
    [0.15, -0.05, 1.00, -0.20, 0.30],
    [0.05, -0.05, 0.50, -0.10, 0.10],
    [-0.10, 0.05, -0.80, 0.10, -0.25],
    [0.05, -0.05, 0.30, -0.10, 0.10],
    [0.10, -0.05, 0.70, -0.15, 0.20],
    [0.05, 0.00, 0.20, -0.90, -0.10],
    [0.05, 0.00, 0.40, -1.20, 0.40],
    [0.05, 0.00, 0.80, -0.80, 0.50],
    [0.05, -0.05, 1.20, -0.40, 0.50],
    [0.05, -0.10, 1.10, -0.20, 0.40],
    [0.05, -0.10, 0.90, -0.10, 0.30],
])
_PRECORDIAL_ST = np.array([0, 0.3, 0, -0.3, 0.5, 0, 0.8, 1.0, 1.0, 0.8, 0.4, 0.2])


def beat_template(qrs_ms: float, st_mv: float, t_inverted: bool) -> np.ndarray:
    """One beat, 0.8 s around the R peak, shape (samples, 12)."""
    t = np.arange(-0.3, 0.5, 1 / FS)[:, None]
    widen = qrs_ms / 90.0
    centres = np.array([-0.16, -0.03 * widen, 0.0, 0.03 * widen, 0.28])
    widths = np.array([0.025, 0.010 * widen, 0.012 * widen, 0.012 * widen, 0.05])
    amplitudes = _AMPLITUDES.copy()
    if t_inverted:
        amplitudes[[0, 4, 7, 8, 9, 10], 4] *= -1
    waves = np.exp(-0.5 * ((t[..., None] - centres) / widths) ** 2)  # (samples, 1, 5)
    beat = (waves * amplitudes[None]).sum(axis=-1)
    beat += st_mv * _PRECORDIAL_ST[None] * np.exp(-0.5 * ((t - 0.14) / 0.06) ** 2)
    return beat


def synth_ecg(rng: np.random.Generator, heart_rate: float, st_mv: float, qrs_ms: float, t_inverted: bool) -> np.ndarray:
    """A 10 s, 500 Hz, 12-lead signal in mV, shape (5000, 12)."""
    n = FS * SECONDS
    signal = np.zeros((n + FS, 12))
    beat = beat_template(qrs_ms, st_mv, t_inverted)
    rr = 60.0 / max(heart_rate, 30.0)
    position = 0.3 + rng.uniform(0, rr)
    while position < SECONDS + 0.3:
        start = int(position * FS) - int(0.3 * FS)
        if start >= 0:
            signal[start:start + len(beat)] += beat[: max(0, min(len(beat), len(signal) - start))]
        position += rr * (1 + rng.normal(0, 0.03))
    signal = signal[:n]
    time = np.arange(n) / FS
    wander = 0.08 * np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * time + rng.uniform(0, 6.3))
    return signal + wander[:, None] + rng.normal(0, 0.015, size=signal.shape)
