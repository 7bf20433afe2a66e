"""1-D UNet over latent time with ResNet blocks and cross-attention (a backbone: no diffusion math).

A TANGO/SD-style layout applied along latent time: per level `layers_per_block` ResNet blocks
(GroupNorm-SiLU-Conv, time embedding added, zero-initialised second conv), each followed by a
transformer block (self-attention + cross-attention to text tokens + GELU MLP) where
`attn_levels` says so; strided-conv down-sampling, nearest up-sampling, skip connections.

forward(x [B, C, T], c_noise [B], cond [B, L, D], extra_emb [B, E] | None) -> [B, C, T]
(with return_features=True also the list of per-block outputs [B, C_m, T_m], Eq. 5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from soundctm.nn.embed import make_embedding


@dataclass(frozen=True)
class UNetConfig:
    latent_channels: int = 128
    channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attn_levels: tuple[bool, ...] = (True, True, True, False)
    head_dim: int = 64
    cond_dim: int = 1024
    time_feat_dim: int = 320
    time_embedding: str = "sinusoidal"
    groups: int = 32

    def to_dict(self) -> dict:
        return asdict(self)


def _norm(c: int, groups: int) -> nn.GroupNorm:
    g = min(groups, c)
    while c % g:
        g -= 1
    return nn.GroupNorm(g, c)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin, groups), nn.Conv1d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2, self.conv2 = _norm(cout, groups), nn.Conv1d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class TransformerBlock(nn.Module):
    """Self-attention, cross-attention to cond, MLP; on [B, C, T] with a zero-initialised output."""

    def __init__(self, c: int, head_dim: int, cond_dim: int, groups: int):
        super().__init__()
        self.heads = max(1, c // head_dim)
        self.norm_in = _norm(c, groups)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(c), nn.LayerNorm(c), nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c, bias=False)
        self.attn_out = nn.Linear(c, c)
        self.q = nn.Linear(c, c, bias=False)
        self.kv = nn.Linear(cond_dim, 2 * c, bias=False)
        self.cross_out = nn.Linear(c, c)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))
        self.proj_out = nn.Conv1d(c, c, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        h = self.norm_in(x).transpose(1, 2)  # [B, T, C]
        q, k, v = self.qkv(self.ln1(h)).chunk(3, dim=-1)
        a = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))
        h = h + self.attn_out(a.transpose(1, 2).reshape(b, t, c))
        k, v = self.kv(cond).chunk(2, dim=-1)
        a = F.scaled_dot_product_attention(self._heads(self.q(self.ln2(h))), self._heads(k), self._heads(v))
        h = h + self.cross_out(a.transpose(1, 2).reshape(b, t, c))
        h = h + self.mlp(self.ln3(h))
        return x + self.proj_out(h.transpose(1, 2))


class UNet1D(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        if len(cfg.attn_levels) != len(cfg.channels):
            raise ValueError("attn_levels must have one entry per level of channels")
        self.cfg = cfg
        ch0 = cfg.channels[0]
        self.emb_dim = emb = 4 * ch0
        self.time_embed = make_embedding(cfg.time_embedding, cfg.time_feat_dim, emb)
        self.conv_in = nn.Conv1d(cfg.latent_channels, ch0, 3, padding=1)
        self.down = nn.ModuleList()
        skip_ch = [ch0]
        c = ch0
        for lvl, cout in enumerate(cfg.channels):
            for _ in range(cfg.layers_per_block):
                self.down.append(self._unit(c, cout, cfg.attn_levels[lvl]))
                c = cout
                skip_ch.append(c)
            if lvl < len(cfg.channels) - 1:
                self.down.append(nn.Conv1d(c, c, 3, stride=2, padding=1))
                skip_ch.append(c)
        self.mid = nn.ModuleList([self._unit(c, c, True), self._unit(c, c, False)])
        self.up = nn.ModuleList()
        for lvl in reversed(range(len(cfg.channels))):
            cout = cfg.channels[lvl]
            for _ in range(cfg.layers_per_block + 1):
                self.up.append(self._unit(c + skip_ch.pop(), cout, cfg.attn_levels[lvl]))
                c = cout
            if lvl > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv1d(c, c, 3, padding=1)))
        self.norm_out = _norm(c, cfg.groups)
        self.conv_out = nn.Conv1d(c, cfg.latent_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _unit(self, cin: int, cout: int, attn: bool) -> nn.ModuleList:
        mods = [ResBlock(cin, cout, self.emb_dim, self.cfg.groups)]
        if attn:
            mods.append(TransformerBlock(cout, self.cfg.head_dim, self.cfg.cond_dim, self.cfg.groups))
        return nn.ModuleList(mods)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.cfg.channels) - 1)

    def new_scalar_embedding(self, kind: str | None = None, *, zero_init: bool = True) -> nn.Module:
        """An embedding of the same family as the t-embedding (for the student's s / omega)."""
        return make_embedding(kind or self.cfg.time_embedding, self.cfg.time_feat_dim, self.emb_dim,
                              zero_init=zero_init)

    def last_layer(self) -> torch.Tensor:
        return self.conv_out.weight

    @staticmethod
    def _run_unit(unit, h, emb, cond):
        h = unit[0](h, emb)
        if len(unit) > 1:
            h = unit[1](h, cond)
        return h

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor, extra_emb=None, *,
                return_features: bool = False):
        cfg = self.cfg
        if x.ndim != 3 or x.shape[1] != cfg.latent_channels:
            raise ValueError(f"UNet1D expects x [B, {cfg.latent_channels}, T], got {tuple(x.shape)}")
        if x.shape[-1] % self.downsample_factor:
            raise ValueError(f"UNet1D needs T divisible by {self.downsample_factor}, got T={x.shape[-1]}")
        if cond.ndim != 3 or cond.shape[-1] != cfg.cond_dim:
            raise ValueError(f"UNet1D expects cond [B, L, {cfg.cond_dim}], got {tuple(cond.shape)}")
        emb = self.time_embed(c_noise)
        if extra_emb is not None:
            emb = emb + extra_emb
        cond = cond.to(x.dtype)
        feats: list[torch.Tensor] = []
        h = self.conv_in(x)
        skips = [h]
        for m in self.down:
            h = m(h) if isinstance(m, nn.Conv1d) else self._run_unit(m, h, emb, cond)
            if return_features and not isinstance(m, nn.Conv1d):
                feats.append(h)
            skips.append(h)
        for m in self.mid:
            h = self._run_unit(m, h, emb, cond)
            if return_features:
                feats.append(h)
        for m in self.up:
            if isinstance(m, nn.Sequential):
                h = m(h)
                continue
            h = self._run_unit(m, torch.cat([h, skips.pop()], dim=1), emb, cond)
            if return_features:
                feats.append(h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return (out, feats) if return_features else out
