"""Audio in and spectra out: the one module that reads audio files, resamples, and computes STFT
magnitudes, mel filterbanks and log-mels. The VAE losses, the tiny CLAP's audio tower, the in-domain
evaluators (tiny-evt, logmel), the metrics' extraction and the datasets all use it.

Shapes: waveforms [B, 1, N] or [B, N]; spectra [B, F, frames]; mel filterbanks [n_mels, n_fft // 2 + 1].
"""

from __future__ import annotations

import functools
import os

import numpy as np
import soundfile as sf
import soxr
import torch
from torch import nn

__all__ = [
    "mel_filterbank",
    "stft",
    "stft_magnitude",
    "stft_same",
    "istft_same",
    "log_mel",
    "LogMel",
    "resample",
    "read_audio",
    "load_audio",
    "UnreadableAudioError",
]


# ----------------------------------------------------------------------------------------------
# spectra


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=64)
def _mel_fb_np(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_pts = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2)
    hz = _mel_to_hz(mel_pts)
    fb = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, c, hi = hz[i], hz[i + 1], hz[i + 2]
        up = (freqs - lo) / max(c - lo, 1e-9)
        down = (hi - freqs) / max(hi - c, 1e-9)
        fb[i] = np.clip(np.minimum(up, down), 0.0, None)
        if fb[i].sum() == 0:  # filter narrower than a bin: take the nearest bin
            fb[i, int(np.argmin(np.abs(freqs - c)))] = 1.0
    return fb.astype(np.float32)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> torch.Tensor:
    """Triangular HTK-mel filterbank [n_mels, n_fft // 2 + 1]; every filter has at least one bin."""
    fmax = sample_rate / 2 if fmax is None else fmax
    return torch.from_numpy(_mel_fb_np(int(sample_rate), int(n_fft), int(n_mels), float(fmin), float(fmax)))


def stft(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor | None = None, *, center: bool = True,
         pad_mode: str = "reflect") -> torch.Tensor:
    """The package's one STFT. x: [..., N] -> complex [B, n_fft // 2 + 1, frames] (leading dims flattened).

    window: default a periodic Hann of n_fft on x's device; center: torch's centred framing (a signal too
    short to reflect is zero-padded instead)."""
    x = x.reshape(-1, x.shape[-1])
    if window is None:
        window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    if center and pad_mode == "reflect" and x.shape[-1] <= n_fft // 2:
        pad_mode = "constant"
    return torch.stft(x, n_fft, hop_length=hop, window=window, center=center, pad_mode=pad_mode,
                      return_complex=True)


def stft_magnitude(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """x: [B, 1, N] or [B, N] -> magnitude [B, n_fft // 2 + 1, frames]."""
    return stft(x, n_fft, hop).abs()


def stft_same(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """Complex STFT with "same" framing: exactly N / hop frames, frame t centred on sample
    t * hop + hop / 2 (reflect padding of (n_fft - hop) / 2 on both sides, no centring).

    x: [B, 1, N] -> [B, n_fft // 2 + 1, N / hop] complex.
    """
    pad = (n_fft - hop) // 2
    x = x.reshape(x.shape[0], 1, -1)
    mode = "reflect" if x.shape[-1] > pad else "constant"
    x = nn.functional.pad(x, (pad, pad), mode=mode)[:, 0]
    return stft(x, n_fft, hop, window, center=False)


def istft_same(spec: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """Inverse of `stft_same` (windowed overlap-add divided by the squared-window envelope, as
    in Vocos' "same"-padding ISTFT; torch.istft cannot trim an uncentred signal).

    spec: [B, n_fft // 2 + 1, T] complex -> [B, 1, T * hop].
    """
    b, _, t = spec.shape
    pad = (n_fft - hop) // 2
    frames = torch.fft.irfft(spec, n=n_fft, dim=1) * window[None, :, None]  # [B, n_fft, T]
    size = (t - 1) * hop + n_fft
    fold = functools.partial(nn.functional.fold, output_size=(1, size), kernel_size=(1, n_fft), stride=(1, hop))
    y = fold(frames)[:, 0, 0, pad : size - pad]
    env = fold(window.square()[None, :, None].expand(1, n_fft, t))[0, 0, 0, pad : size - pad]
    return (y / env.clamp_min(1e-8))[:, None]


def log_mel(
    x: torch.Tensor, sample_rate: int, n_fft: int, n_mels: int, hop: int | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """log10 mel magnitude. x: [B, 1, N] -> [B, n_mels, frames]."""
    hop = hop or n_fft // 4
    mag = stft_magnitude(x, n_fft, hop)
    fb = mel_filterbank(sample_rate, n_fft, n_mels).to(mag)
    return torch.log10((fb @ mag).clamp_min(eps))


class LogMel(nn.Module):
    """Waveform [B, N] -> log-mel [B, n_mels, 1 + N // hop] (periodic Hann, centred STFT, power)."""

    def __init__(self, sample_rate=16000, n_fft=1024, hop=256, n_mels=64, fmin=30.0, fmax=None, floor=1e-6):
        super().__init__()
        self.n_fft, self.hop, self.floor = n_fft, hop, floor
        fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax or sample_rate / 2)
        self.register_buffer("fb", fb.clone(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = stft(x.float(), self.n_fft, self.hop, self.window)
        power = spec.real.square() + spec.imag.square()
        return torch.log(self.fb @ power + self.floor)


# ----------------------------------------------------------------------------------------------
# files and rates


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """soxr high-quality resampling along the first axis ([N] or [N, C])."""
    return soxr.resample(x, int(sr_in), int(sr_out), quality="HQ")


class UnreadableAudioError(OSError):
    """An audio file cannot be decoded (corrupt, truncated, not audio); the message names it."""


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a file with soundfile: (waveform [N] or [N, C] float32, sample_rate).

    Raises `UnreadableAudioError` (one line, naming the file) when it cannot be decoded."""
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UnreadableAudioError(f"cannot read audio file {path}: {reason}") from e
    return x, int(sr)


def load_audio(
    path: str | os.PathLike, sample_rate: int, clip_samples: int | None = None
) -> tuple[np.ndarray, dict]:
    """Read one file as mono float32 at `sample_rate`: ([N] or [clip_samples], notes).

    notes: {"resampled_from": int | None, "channels": int}. Multi-channel audio is averaged;
    another rate is resampled with soxr; with `clip_samples` the result is cropped from the start
    or zero-padded.
    """
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    notes = {"resampled_from": None, "channels": int(data.shape[1])}
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sr != sample_rate:
        x = resample(x, sr, sample_rate).astype(np.float32)
        notes["resampled_from"] = int(sr)
    if clip_samples is not None:
        if len(x) >= clip_samples:
            x = x[:clip_samples]
        else:
            x = np.pad(x, (0, clip_samples - len(x)))
    return np.ascontiguousarray(x, dtype=np.float32), notes
