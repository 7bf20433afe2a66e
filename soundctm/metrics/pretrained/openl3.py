"""OpenL3 (mel256, content "env", 512-d) embedder for FD_openl3, in plain PyTorch.

Framing (the `openl3` package with `center=True, hop_size=0.5`): mono 48 kHz audio, 24000 zeros
(0.5 s) prepended, zero-padded at the end so every sample is covered, cut into 1 s frames (48000
samples) every 0.5 s: frames = 1 + ceil(max(0, 24000 + N - 48000) / 24000).

Front end (kapre 0.1.4 `Melspectrogram` as configured by OpenL3): per frame, Keras-"same" zero
padding for a 2048-sample kernel with stride 242 (982 left, 982 right), periodic-Hann windowed DFT
(2048 points) every 242 samples -> power -> 256 HTK-mel triangles 0-24 kHz with area normalisation
(librosa's `norm=1` of that era, i.e. 2 / (f_{m+1} - f_{m-1})) -> sqrt (magnitude mel) ->
10 log10(max(x, 1e-10)), minus the frame's own maximum, floored at -80 dB: [256, 199].

Network (OpenL3 audio subnetwork): BN -> [conv3x3 64 -> BN -> ReLU] x2 -> maxpool 2 ->
[128] x2 -> pool -> [256] x2 -> pool -> conv 512 -> BN -> ReLU -> conv 512 (audio_embedding_layer)
-> maxpool (32, 24) -> 512. BatchNorm eps 1e-3 (Keras). Parameter names follow the torchopenl3
port (`batch_normalization_1..8`, `conv2d_1..7`, `audio_embedding_layer`) so its converted weights
load directly; the spectrogram constants are computed here, not stored.

Resampling to 48 kHz is soxr (via `Embedder.embed`); the `openl3` package uses resampy.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundctm.metrics.registry import Embedder, register

from .weights import load_into, load_state_dict, require_weights

__all__ = ["OpenL3Net", "OpenL3Embedder", "frame_audio", "kapre_mel_matrix", "build"]

SAMPLE_RATE = 48000
FRAME = 48000  # 1 s
N_DFT = 2048
N_HOP = 242
N_MELS = 256
EMBED_DIM = 512


def _hz_to_mel_htk(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz_htk(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def kapre_mel_matrix(sr: int = SAMPLE_RATE, n_dft: int = N_DFT, n_mels: int = N_MELS) -> np.ndarray:
    """[n_mels, n_dft // 2 + 1] HTK-mel triangles over 0..sr/2 with area normalisation."""
    fft_freqs = np.linspace(0.0, sr / 2.0, n_dft // 2 + 1)
    mel_f = _mel_to_hz_htk(np.linspace(_hz_to_mel_htk(0.0), _hz_to_mel_htk(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0.0, np.minimum(lower, upper))
    w *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return w


def frame_audio(x: np.ndarray, hop: int = FRAME // 2) -> np.ndarray:
    """48 kHz mono [N] -> frames [F, 48000]: 0.5 s of zeros prepended, end zero-padded, hop `hop`."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"expected a non-empty mono waveform [N], got shape {x.shape}")
    x = np.concatenate([np.zeros(FRAME // 2, np.float32), x])
    n = x.size
    pad = FRAME - n if n < FRAME else math.ceil((n - FRAME) / hop) * hop - (n - FRAME)
    if pad > 0:
        x = np.concatenate([x, np.zeros(pad, np.float32)])
    count = 1 + (x.size - FRAME) // hop
    return np.lib.stride_tricks.as_strided(x, (count, FRAME), (x.strides[0] * hop, x.strides[0])).copy()


class KapreMelSpectrogram(nn.Module):
    """[F, 48000] frames -> [F, 1, 256, 199] decibel mel spectrogram (constants are not parameters)."""

    def __init__(self):
        super().__init__()
        n = np.arange(N_DFT)
        k = np.arange(N_DFT // 2 + 1)
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_DFT)  # periodic Hann
        ang = 2.0 * np.pi * k[:, None] * n[None, :] / N_DFT
        self.register_buffer(
            "dft_real", torch.tensor(np.cos(ang) * window, dtype=torch.float32)[:, None], persistent=False
        )
        self.register_buffer(
            "dft_imag", torch.tensor(-np.sin(ang) * window, dtype=torch.float32)[:, None], persistent=False
        )
        self.register_buffer("mel", torch.tensor(kapre_mel_matrix(), dtype=torch.float32), persistent=False)
        rem = FRAME % N_HOP
        total = max(N_DFT - (rem if rem else N_HOP), 0)
        self.pad = (total // 2, total - total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x[:, None], self.pad)  # [F, 1, 48000 + pad]
        re = F.conv1d(x, self.dft_real, stride=N_HOP)
        im = F.conv1d(x, self.dft_imag, stride=N_HOP)
        power = re.square() + im.square()  # [F, 1025, T]
        mel = torch.sqrt(torch.matmul(self.mel, power))  # magnitude mel, [F, 256, T]
        db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        db = db - db.amax(dim=(1, 2), keepdim=True)
        return torch.clamp(db, min=-80.0)[:, None]


class OpenL3Net(nn.Module):
    """OpenL3 mel256 audio network: frames [F, 48000] at 48 kHz -> embeddings [F, 512]."""

    def __init__(self):
        super().__init__()
        self.speclayer = KapreMelSpectrogram()
        chans = [(1, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512)]
        self.batch_normalization_1 = nn.BatchNorm2d(1, eps=1e-3, momentum=0.01)
        for i, (cin, cout) in enumerate(chans, start=1):
            setattr(self, f"conv2d_{i}", nn.Conv2d(cin, cout, 3, padding=1))
            setattr(self, f"batch_normalization_{i + 1}", nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01))
        self.audio_embedding_layer = nn.Conv2d(512, EMBED_DIM, 3, padding=1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: [F, 48000] -> [F, 512]."""
        if frames.ndim != 2 or frames.shape[1] != FRAME:
            raise ValueError(f"OpenL3 expects frames [F, {FRAME}], got {tuple(frames.shape)}")
        h = self.batch_normalization_1(self.speclayer(frames))
        for i in range(1, 8):
            h = F.relu(getattr(self, f"batch_normalization_{i + 1}")(getattr(self, f"conv2d_{i}")(h)))
            if i in (2, 4, 6):
                h = F.max_pool2d(h, 2, 2)
        h = self.audio_embedding_layer(h)  # [F, 512, 32, 24]
        return F.max_pool2d(h, kernel_size=(32, 24)).flatten(1)


class OpenL3Embedder(Embedder):
    """FD_openl3 embedder: one 512-d embedding per 1 s frame, every 0.5 s.

    forward(waveforms): list of mono float32 [N_i] at 48 kHz ->
      {"embeddings": [F, 512], "frames": [B]} with frames_i = 1 + ceil(max(0, N_i - 24000) / 24000).
    """

    name = "openl3"
    version = "openl3-mel256-env-512-hop0.5-center"
    sample_rate = SAMPLE_RATE
    window = FRAME
    hop = FRAME // 2
    channels = "mono"
    outputs = ("embeddings",)

    def __init__(self, net: OpenL3Net, device: str | torch.device = "cpu", batch_size: int = 64):
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = int(batch_size)

    @property
    def min_samples(self) -> int:
        # OpenL3 pads short clips itself (after the 0.5 s start padding); do not pre-pad.
        return 1

    @classmethod
    def from_weights(cls, path=None, device: str | torch.device = "cpu", **kw) -> OpenL3Embedder:
        if path is None:
            path = require_weights("openl3")["openl3"]
        net = OpenL3Net()
        load_into(net, load_state_dict(path), ignore_prefixes=("speclayer.",), source=str(path))
        return cls(net, device=device, **kw)

    @torch.no_grad()
    def forward(self, waveforms: list[np.ndarray]) -> dict[str, np.ndarray]:
        framed = [frame_audio(w, self.hop) for w in waveforms]
        counts = np.array([len(f) for f in framed], np.int64)
        allf = np.concatenate(framed, 0)
        outs = []
        for i in range(0, len(allf), self.batch_size):
            xb = torch.from_numpy(allf[i : i + self.batch_size]).to(self.device)
            outs.append(self.net(xb).float().cpu().numpy())
        return {"embeddings": np.concatenate(outs, 0), "frames": counts}


def build(weights=None, device: str = "cpu", **kw) -> OpenL3Embedder:
    """Registry factory: OpenL3 mel256/env/512 with local weights (`SOUNDCTM_OPENL3_WEIGHTS`)."""
    return OpenL3Embedder.from_weights(weights, device=device, **kw)


register("openl3", build, overwrite=True)
