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


def make_embedding(kind: str, feat_dim: int, out_dim: int, *, zero_init: bool = False,
                   fourier_scale: float = 1.0) -> ScalarEmbedding:
    """Factory for the t / s / omega embedding families: 'fourier' (learned), 'fourier-fixed', 'sinusoidal'."""
    if kind == "fourier":
        feats = FourierFeatures(feat_dim, fourier_scale, learned=True)
    elif kind == "fourier-fixed":
        feats = FourierFeatures(feat_dim, fourier_scale, learned=False)
    elif kind == "sinusoidal":
        feats = SinusoidalFeatures(feat_dim)
    else:
        raise ValueError(f"unknown embedding kind {kind!r}; expected 'fourier', 'fourier-fixed' or 'sinusoidal'")
    return ScalarEmbedding(feats, feat_dim, out_dim, zero_init=zero_init)
