"""Sound-intensity control (Table 5, Figs. 10-11, App. C.3): the feature f(x) and the six target curves.

Feature (App. C.3): f(x) = w * 20 log10(RMS(x)), frame-wise RMS smoothed by a Savitzky-Golay filter w
with a 1-second context. The paper gives neither the framing nor the filter order; ours:

- frames of 1024 samples every 256 samples (64 ms / 16 ms at 16 kHz), the tail zero-padded;
- 20 log10(max(RMS, 1e-5)), i.e. silence is floored at -100 dB;
- Savitzky-Golay polynomial order 2 over the odd number of frames closest to 1 s (61 frames = 0.976 s at
  16 kHz with hop 256), edges extended with the nearest value;
- it is `soundctm.metrics.functional.intensity_curve` (numpy/scipy, the metric) and its differentiable twin
  `intensity_curve_torch` (a fixed convolution with `scipy.signal.savgol_coeffs`, used by the guidance).

Target curves y (the paper only plots them, Figs. 10a/11a), on the frame grid u = 0 .. 1 (first to last
frame), levels LOW_DB = -45 dB and HIGH_DB = -15 dB (the active range of the tiny corpus' test clips:
their frame levels' median is -26 dB, their loudest frames -17 dB at the median clip):

    rising    LOW + (HIGH - LOW) u                     a line up
    falling   HIGH - (HIGH - LOW) u                    a line down
    flat      (LOW + HIGH) / 2                         a constant -30 dB
    peak      LOW + (HIGH - LOW) sin(pi u)             a half-sine bump, loudest mid-clip
    dip       HIGH - (HIGH - LOW) sin(pi u)            the bump upside down
    two-step  LOW, then (LOW + HIGH) / 2 from u = 1/3, then HIGH from u = 2/3   a staircase up

Item i of an intensity table gets curve CURVES[i % 6] (`item_curve`), so each curve gets every sixth item.
The loss is the per-clip MSE in dB^2 between f(x) and y over all frames (`intensity_mse`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from soundctm.metrics import functional as Fm

__all__ = ["CURVES", "LOW_DB", "HIGH_DB", "IntensityFeature", "target_curve", "item_curve", "item_targets",
           "intensity_mse_per_clip"]

CURVES = ("rising", "falling", "flat", "peak", "dip", "two-step")
LOW_DB, HIGH_DB = -45.0, -15.0


@dataclass(frozen=True)
class IntensityFeature:
    """f(x): Savitzky-Golay-smoothed frame dB RMS (module docstring). Call it on waveforms [B, N] (torch,
    differentiable); `numpy` is the metric's own implementation on arrays."""

    sample_rate: int
    frame: int = 1024
    hop: int = 256
    polyorder: int = 2
    floor_db: float = -100.0

    def n_frames(self, n_samples: int) -> int:
        return max(1, 1 + math.ceil(max(n_samples - self.frame, 0) / self.hop))

    def window_frames(self, n_samples: int) -> int:
        """The Savitzky-Golay window length in frames for clips of `n_samples`."""
        return Fm._savgol_window(self.n_frames(n_samples), self.sample_rate, self.hop, self.polyorder)

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        return Fm.intensity_curve_torch(wav, self.sample_rate, self.frame, self.hop, self.floor_db, self.polyorder)

    def numpy(self, wav: np.ndarray) -> np.ndarray:
        return Fm.intensity_curve(wav, self.sample_rate, self.frame, self.hop, self.floor_db, self.polyorder)

    def settings(self) -> dict:
        return {"sample_rate": self.sample_rate, "frame": self.frame, "hop": self.hop, "polyorder": self.polyorder,
                "floor_db": self.floor_db}


def target_curve(name: str, n_frames: int, low: float = LOW_DB, high: float = HIGH_DB) -> np.ndarray:
    """The target dB curve `name` (one of CURVES) over `n_frames` frames. Returns [n_frames] float64."""
    if name not in CURVES:
        raise ValueError(f"unknown intensity curve {name!r}; expected one of {', '.join(CURVES)}")
    if n_frames < 1:
        raise ValueError(f"need at least one frame, got {n_frames}")
    u = np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.zeros(1)
    mid, span = (low + high) / 2.0, high - low
    if name == "rising":
        return low + span * u
    if name == "falling":
        return high - span * u
    if name == "flat":
        return np.full(n_frames, mid)
    if name == "peak":
        return low + span * np.sin(np.pi * u)
    if name == "dip":
        return high - span * np.sin(np.pi * u)
    return np.where(u < 1.0 / 3.0, low, np.where(u < 2.0 / 3.0, mid, high))  # two-step


def item_curve(i: int) -> str:
    """The target curve of item i of an intensity table."""
    return CURVES[int(i) % len(CURVES)]


def item_targets(indices, n_frames: int) -> np.ndarray:
    """Targets of items `indices`: [len(indices), n_frames]."""
    return np.stack([target_curve(item_curve(i), n_frames) for i in indices])


def intensity_mse_per_clip(feature: IntensityFeature, wavs, targets: np.ndarray) -> np.ndarray:
    """Per-clip MSE (dB^2) between f(x) (the numpy metric) and the targets [N, F]. Returns [N]."""
    return np.array([Fm.intensity_mse(feature.numpy(np.asarray(w)), t) for w, t in zip(wavs, targets)])
