"""Scalar embeddings for noise levels and guidance scales (no diffusion math here)."""

from __future__ import annotations

import math

import torch
from torch import nn


class FourierFeatures(nn.Module):
    """x [B] -> [B, dim]: cat(cos(2 pi f x), sin(2 pi f x)) with f ~ N(0, scale^2); learnable or fixed."""

    def __init__(self, dim: int, scale: float = 1.0, learned: bool = True):
        super().__init__()
        if dim % 2:
            raise ValueError(f"FourierFeatures dim must be even, got {dim}")
        w = torch.randn(dim // 2) * scale
        if learned:
            self.weight = nn.Parameter(w)
        else:
            self.register_buffer("weight", w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * x.float()[:, None] * self.weight[None, :]
        return torch.cat([f.cos(), f.sin()], dim=1)


class SinusoidalFeatures(nn.Module):
    """Transformer positional embedding of a scalar (Vaswani et al.), x [B] -> [B, dim].

    The input is multiplied by `input_scale` first (c_noise = ln(sigma)/4 lives in about [-1.6, 1.1]).
    """

    def __init__(self, dim: int, max_period: float = 10000.0, input_scale: float = 1000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"SinusoidalFeatures dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs)
        self.input_scale = float(input_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = (x.float() * self.input_scale)[:, None] * self.freqs[None, :]
        return torch.cat([a.cos(), a.sin()], dim=1)


class ScalarEmbedding(nn.Module):
    """features(x) -> Linear -> SiLU -> Linear: [B] -> [B, out_dim].

    `zero_init=True` zero-initialises the last layer, so a freshly added embedding (the student's s
    and omega, Appendix C) contributes exactly 0 until trained.
    """

    def __init__(self, features: nn.Module, feat_dim: int, out_dim: int, zero_init: bool = False):
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(feat_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))
        if zero_init:
            nn.init.zeros_(self.mlp[2].weight)
            nn.init.zeros_(self.mlp[2].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(x))


class GuidanceSinusoidal(nn.Module):
    """A parameter-free sinusoidal embedding of a guidance scale straight to `dim` (no MLP): w [B] ->
    [B, dim] = cat(sin(1000 w f_k), cos(1000 w f_k)), f_k = exp(-ln(10000) k / (dim/2 - 1)), k < dim/2
    (VDM's embedding as the official SoundCTM-DiT code adds it to its global token). Having no
    parameters, it cannot be zero-initialised: a student using it differs from its teacher at step 0."""

    def __init__(self, dim: int, input_scale: float = 1000.0, max_period: float = 10000.0):
        super().__init__()
        if dim % 2 or dim < 4:
            raise ValueError(f"GuidanceSinusoidal dim must be even and >= 4, got {dim}")
        self.dim, self.input_scale, self.max_period = int(dim), float(input_scale), float(max_period)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        k = torch.arange(half, dtype=torch.float32, device=w.device)
        f = torch.exp(k * (-math.log(self.max_period) / (half - 1)))
        a = (w.float() * self.input_scale)[:, None] * f[None, :]
        return torch.cat([a.sin(), a.cos()], dim=1)


class SharedEmbedding(nn.Module):
    """Another module's embedding, reused with its weights (the official SoundCTM-DiT embeds the jump's
    end time s with the same Fourier features and MLP as t). The target is held by reference, not
    registered, so its parameters stay with (and are saved and moved by) their owner."""

    def __init__(self, target: nn.Module):
        super().__init__()
        self._target = [target]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._target[0](x)


EMBEDDINGS = ("fourier", "fourier-fixed", "sinusoidal", "guidance-sinusoidal")


def make_embedding(kind: str, feat_dim: int, out_dim: int, *, zero_init: bool = False,
                   fourier_scale: float = 1.0) -> nn.Module:
    """Factory for the t / s / omega embedding families: 'fourier' (learned), 'fourier-fixed', 'sinusoidal'
    (features -> MLP), and 'guidance-sinusoidal' (`GuidanceSinusoidal`: parameter-free, straight to out_dim)."""
    if kind == "guidance-sinusoidal":
        return GuidanceSinusoidal(out_dim)
    if kind == "fourier":
        feats = FourierFeatures(feat_dim, fourier_scale, learned=True)
    elif kind == "fourier-fixed":
        feats = FourierFeatures(feat_dim, fourier_scale, learned=False)
    elif kind == "sinusoidal":
        feats = SinusoidalFeatures(feat_dim)
    else:
        raise ValueError(f"unknown embedding kind {kind!r}; expected one of {EMBEDDINGS}")
    return ScalarEmbedding(feats, feat_dim, out_dim, zero_init=zero_init)
