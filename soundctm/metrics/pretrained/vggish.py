"""VGGish embedder for FAD_vgg, in plain PyTorch (no torchvggish / torch.hub code path).

Front end (the AudioSet VGGish `vggish_input` / `mel_features` definition, METRICS.md):
mono 16 kHz waveform in [-1, 1] -> frames of 400 samples (25 ms) every 160 (10 ms), no padding ->
periodic Hann window -> |rfft| with 512 points (257 bins) -> 64 HTK-mel bands between 125 and
7500 Hz (triangles on the mel scale, DC bin zeroed) -> log(mel + 0.01) -> non-overlapping examples
of 96 frames (0.96 s), an incomplete tail dropped.

Network: the VGG-like stack of the AudioSet release (conv 64, pool, conv 128, pool, 2x conv 256,
pool, 2x conv 512, pool; then 12288 -> 4096 -> 4096 -> 128 fully connected). The 128-d embedding is
the last linear layer's output WITHOUT its ReLU and without the PCA/quantisation post-processor, as
in frechet-audio-distance (`use_pca=False, use_activation=False`). Parameter names match the
torchvggish state_dict (`features.N.*`, `embeddings.N.*`) so its release file loads as is.

Resampling is soxr (via `Embedder.embed`), not resampy as in the reference toolkit: FAD values
computed from audio that is not already at 16 kHz can differ slightly from the toolkit's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from soundctm.metrics.registry import Embedder, register

from .weights import load_into, load_state_dict, require_weights

__all__ = ["VGGishNet", "VGGishEmbedder", "log_mel_examples", "mel_matrix", "build"]

SAMPLE_RATE = 16000
STFT_WINDOW = 400  # 25 ms
STFT_HOP = 160  # 10 ms
FFT_LENGTH = 512
NUM_MELS = 64
MEL_LOW_HZ, MEL_HIGH_HZ = 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s
EXAMPLE_HOP_SAMPLES = EXAMPLE_FRAMES * STFT_HOP  # 15360: one new example every 0.96 s
MIN_SAMPLES = STFT_WINDOW + (EXAMPLE_FRAMES - 1) * STFT_HOP  # 15600: samples needed for one example


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(
    num_bins: int = FFT_LENGTH // 2 + 1,
    sample_rate: int = SAMPLE_RATE,
    num_mels: int = NUM_MELS,
    low_hz: float = MEL_LOW_HZ,
    high_hz: float = MEL_HIGH_HZ,
) -> np.ndarray:
    """[num_bins, num_mels] triangular HTK-mel weights; the DC bin gets no weight."""
    if not 0.0 <= low_hz < high_hz <= sample_rate / 2:
        raise ValueError(f"mel band edges must satisfy 0 <= low < high <= nyquist, got {low_hz}, {high_hz}")
    bins_mel = _hz_to_mel(np.linspace(0.0, sample_rate / 2.0, num_bins))
    edges = np.linspace(_hz_to_mel(low_hz), _hz_to_mel(high_hz), num_mels + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (bins_mel[:, None] - lower[None]) / (center - lower)[None]
    down = (upper[None] - bins_mel[:, None]) / (upper - center)[None]
    w = np.maximum(0.0, np.minimum(up, down))
    w[0, :] = 0.0
    return w


_MEL = mel_matrix()
_WINDOW = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(STFT_WINDOW) / STFT_WINDOW)  # periodic Hann


def _frame(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """[N] -> [1 + (N - length) // hop, length] (no padding; empty when N < length)."""
    n = 0 if len(x) < length else 1 + (len(x) - length) // hop
    if n == 0:
        return np.zeros((0, length), x.dtype)
    return np.lib.stride_tricks.as_strided(
        x, shape=(n, length), strides=(x.strides[0] * hop, x.strides[0]), writeable=False
    )


def log_mel(waveform: np.ndarray) -> np.ndarray:
    """16 kHz mono waveform [N] -> log-mel spectrogram [1 + (N - 400) // 160, 64] (float64)."""
    x = np.ascontiguousarray(np.asarray(waveform, dtype=np.float64))
    if x.ndim != 1:
        raise ValueError(f"expected a mono waveform [N], got shape {x.shape}")
    frames = _frame(x, STFT_WINDOW, STFT_HOP)
    mag = np.abs(np.fft.rfft(frames * _WINDOW, FFT_LENGTH))
    return np.log(mag @ _MEL + LOG_OFFSET)


def log_mel_examples(waveform: np.ndarray) -> np.ndarray:
    """16 kHz mono waveform [N] -> VGGish input examples [E, 96, 64] (float32).

    E = number of complete 96-frame blocks of the log-mel spectrogram (tail dropped); 0 when N < 15600.
    """
    lm = np.ascontiguousarray(log_mel(waveform))
    n = 0 if len(lm) < EXAMPLE_FRAMES else 1 + (len(lm) - EXAMPLE_FRAMES) // EXAMPLE_FRAMES
    ex = lm[: n * EXAMPLE_FRAMES].reshape(n, EXAMPLE_FRAMES, NUM_MELS)
    return ex.astype(np.float32)


class VGGishNet(nn.Module):
    """VGGish network: examples [E, 1, 96, 64] -> embeddings [E, 128] (last linear, no ReLU)."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(cin, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        # Index layout matches torchvggish (0, 2, 4 are the linear layers); the final ReLU is omitted.
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 128),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [E, 1, 96, 64] log-mel examples -> [E, 128]."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, EXAMPLE_FRAMES, NUM_MELS):
            raise ValueError(f"VGGish expects [E, 1, 96, 64] examples, got {tuple(x.shape)}")
        h = self.features(x)  # [E, 512, 6, 4]
        # Flatten in (H, W, C) order like the TensorFlow original the weights were converted from.
        h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)
        return self.embeddings(h)


class VGGishEmbedder(Embedder):
    """FAD_vgg embedder: one 128-d embedding per complete 0.96 s example of each clip.

    forward(waveforms): list of mono float32 [N_i] at 16 kHz (N_i >= 15600) ->
      {"embeddings": [F, 128], "frames": [B]} with frames_i = 1 + (N_i - 15600) // 15360.
    """

    name = "vggish"
    version = "audioset-vggish-128d-noact-nopca"
    sample_rate = SAMPLE_RATE
    window = MIN_SAMPLES
    hop = EXAMPLE_HOP_SAMPLES
    channels = "mono"
    outputs = ("embeddings",)

    def __init__(self, net: VGGishNet, device: str | torch.device = "cpu", batch_size: int = 256):
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = int(batch_size)

    @classmethod
    def from_weights(cls, path=None, device: str | torch.device = "cpu", **kw) -> VGGishEmbedder:
        """Load the local VGGish state_dict (`weights.WEIGHTS["vggish"]`, or `path`)."""
        if path is None:
            path = require_weights("vggish")["vggish"]
        net = VGGishNet()
        # torchvggish files may carry the PCA post-processor; FAD_vgg does not use it.
        load_into(net, load_state_dict(path), ignore_prefixes=("pproc.",), source=str(path))
        return cls(net, device=device, **kw)

    @torch.no_grad()
    def forward(self, waveforms: list[np.ndarray]) -> dict[str, np.ndarray]:
        examples = [log_mel_examples(w) for w in waveforms]
        frames = np.array([len(e) for e in examples], np.int64)
        allx = (
            np.concatenate(examples, 0) if examples else np.zeros((0, EXAMPLE_FRAMES, NUM_MELS), np.float32)
        )
        outs = []
        for i in range(0, len(allx), self.batch_size):
            xb = torch.from_numpy(allx[i : i + self.batch_size]).to(self.device)[:, None]
            outs.append(self.net(xb).float().cpu().numpy())
        emb = np.concatenate(outs, 0) if outs else np.zeros((0, 128), np.float32)
        return {"embeddings": emb, "frames": frames}


def build(weights=None, device: str = "cpu", **kw) -> VGGishEmbedder:
    """Registry factory: VGGish with local weights (`SOUNDCTM_VGGISH_WEIGHTS` or the weights dir)."""
    return VGGishEmbedder.from_weights(weights, device=device, **kw)


register("vggish", build, overwrite=True)
