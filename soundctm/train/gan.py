"""Optional GAN term of distillation (CTM's L_GAN, used by SoundCTM's official code; off by default).

Discriminators see decoded audio: the real clip (VAE decode of z_0) and the student's 0-time estimate
G_theta(z_t, t, 0) decoded through the frozen VAE decoder (gradients flow through the decoder into
the student, the VAE's own weights stay frozen).

- `MultiPeriodDiscriminator`: the waveform folded into [B, 1, N / p, p] for periods p, 2-D convs over
  (time / p) with kernel width 1 across the period (HiFi-GAN).
- `MultiScaleSTFTDiscriminator`: multi-band 2-D convs over complex STFTs (real, imag) at several FFT sizes
  (DAC's multi-band multi-scale STFT discriminator).
- Hinge losses and L1 feature matching; the generator weight is adaptive like lambda_DSM.

All discriminators return (list of logits, list of per-layer feature lists).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = [
    "PeriodDiscriminator",
    "MultiPeriodDiscriminator",
    "STFTDiscriminator",
    "MultiScaleSTFTDiscriminator",
    "AudioDiscriminators",
    "discriminator_hinge_loss",
    "generator_hinge_loss",
    "feature_matching_loss",
]


class PeriodDiscriminator(nn.Module):
    """One period p: wav [B, 1, N] -> logits [B, 1, N', p] and per-layer features."""

    def __init__(self, period: int, channels: Sequence[int] = (16, 32, 64)):
        super().__init__()
        self.period = int(period)
        layers, c_in = [], 1
        for c in channels:
            layers.append(weight_norm(nn.Conv2d(c_in, c, (5, 1), (3, 1), padding=(2, 0))))
            c_in = c
        self.layers = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(c_in, 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, n = wav.shape
        if n % self.period:
            wav = F.pad(wav, (0, self.period - n % self.period), mode="reflect")
        x = wav.reshape(b, c, -1, self.period)
        feats = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.1)
            feats.append(x)
        return self.out(x), feats


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), channels: Sequence[int] = (16, 32, 64)):
        super().__init__()
        self.discs = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, wav: torch.Tensor):
        outs = [d(wav) for d in self.discs]
        return [o[0] for o in outs], [o[1] for o in outs]


BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))  # DAC's split of the frequency axis


class STFTDiscriminator(nn.Module):
    """One FFT size, multi-band (DAC's MRD): wav [B, 1, N] -> complex STFT as 2 channels [B, 2, F, T],
    split along frequency into `bands` (fractions of F), each band through its own 2-D conv stack
    (the first layer at full resolution, the next ones strided by 2 in frequency and time), the bands'
    outputs concatenated along frequency into one logit map."""

    def __init__(self, n_fft: int, channels: Sequence[int] = (8, 16, 16), bands=BANDS):
        super().__init__()
        self.n_fft, self.hop = int(n_fft), int(n_fft) // 4
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        n_bins = self.n_fft // 2 + 1
        self.bands = [(int(round(a * n_bins)), int(round(b * n_bins))) for a, b in bands]
        if any(hi - lo < 1 for lo, hi in self.bands):
            raise ValueError(f"n_fft {n_fft} is too small for {len(bands)} bands")

        def stack():
            layers, c_in = [], 2
            for i, c in enumerate(channels):
                stride = (2, 2) if i else (1, 1)
                layers.append(weight_norm(nn.Conv2d(c_in, c, (3, 9), stride, padding=(1, 4))))
                c_in = c
            return nn.ModuleList(layers)

        self.band_layers = nn.ModuleList(stack() for _ in self.bands)
        self.out = weight_norm(nn.Conv2d(channels[-1], 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(
            wav.reshape(-1, wav.shape[-1]), self.n_fft, self.hop, window=self.window, return_complex=True
        )
        x = torch.stack([spec.real, spec.imag], 1)  # [B, 2, F, T]
        feats, outs = [], []
        for (lo, hi), layers in zip(self.bands, self.band_layers):
            h = x[:, :, lo:hi]
            for layer in layers:
                h = F.leaky_relu(layer(h), 0.1)
                feats.append(h)
            outs.append(h)
        return self.out(torch.cat(outs, dim=2)), feats


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, n_ffts: Sequence[int] = (1024, 512, 256), channels: Sequence[int] = (8, 16, 16)):
        super().__init__()
        self.discs = nn.ModuleList(STFTDiscriminator(n, channels) for n in n_ffts)

    def forward(self, wav: torch.Tensor):
        outs = [d(wav) for d in self.discs]
        return [o[0] for o in outs], [o[1] for o in outs]


class AudioDiscriminators(nn.Module):
    """Multi-period + multi-scale STFT discriminators: wav [B, 1, N] -> (logits list, feature lists)."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), n_ffts: Sequence[int] = (1024, 512, 256)):
        super().__init__()
        self.mpd = MultiPeriodDiscriminator(periods)
        self.msd = MultiScaleSTFTDiscriminator(n_ffts)

    def forward(self, wav: torch.Tensor):
        l1, f1 = self.mpd(wav)
        l2, f2 = self.msd(wav)
        return l1 + l2, f1 + f2


def discriminator_hinge_loss(
    real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]
) -> torch.Tensor:
    """sum_k E[relu(1 - D_k(real))] + E[relu(1 + D_k(fake))]. Scalar."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits))


def generator_hinge_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """sum_k E[-D_k(fake)]. Scalar."""
    return sum(-f.mean() for f in fake_logits)


def feature_matching_loss(real_feats, fake_feats) -> torch.Tensor:
    """Mean L1 distance of the discriminators' per-layer features (real features detached). Scalar."""
    terms = [F.l1_loss(f, r.detach()) for rs, fs in zip(real_feats, fake_feats) for r, f in zip(rs, fs)]
    return sum(terms) / max(len(terms), 1)
