"""Stable-Audio-2-style diffusion transformer over latent time (a backbone: no diffusion math).

Pre-norm blocks (LayerNorm without bias): fused-qkv self-attention with rotary embeddings on part
of each head -> cross-attention to text tokens (grouped key/value heads) -> SwiGLU feed-forward.
Bias-free linear projections latent<->width with zero-initialised 1x1 residual convs around the
transformer; the time embedding (plus any extra embedding, e.g. the student's s and omega) is
one global token prepended to the sequence and dropped at the output. Output projections of each
sub-layer and of the network are zero-initialised. Optionally (`cond_mlp`) the text tokens pass a
Linear-SiLU-Linear before the cross-attention, as in the released SoundCTM-DiT.

forward(x [B, C, T], c_noise [B], cond [B, L, D], extra_emb [B, W] | None) -> [B, C, T]
(and, with return_features=True, the list of per-block outputs, each [B, W, T]).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from soundctm.nn.embed import SharedEmbedding, make_embedding


@dataclass(frozen=True)
class DiTConfig:
    latent_channels: int = 64
    width: int = 1536
    depth: int = 24
    heads: int = 24
    cond_dim: int = 512
    cross_kv_heads: int = 8
    rotary_dim: int = 32
    ff_mult: int = 4
    time_feat_dim: int = 256
    time_embedding: str = "fourier"
    # the released SoundCTM-DiT's conditioning MLP: cond tokens -> Linear -> SiLU -> Linear (cond_dim -> cond_dim,
    # no biases) before the cross-attention keys / values (stable-audio-tools' `to_cond_embed`); off: tokens as given
    cond_mlp: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _rotary(x: torch.Tensor, rot_dim: int) -> torch.Tensor:
    """Apply rotary position embedding to the first rot_dim channels of x [B, H, N, Dh]."""
    if rot_dim == 0:
        return x
    n = x.shape[-2]
    half = rot_dim // 2
    inv = 1.0 / (10000 ** (torch.arange(half, device=x.device, dtype=torch.float32) / half))
    ang = torch.arange(n, device=x.device, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    xr, xp = x[..., :rot_dim], x[..., rot_dim:]
    x1, x2 = xr[..., :half], xr[..., half:]
    rot = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return torch.cat([rot, xp], dim=-1)


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, rotary_dim: int):
        super().__init__()
        self.heads, self.rotary_dim = heads, rotary_dim
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        nn.init.zeros_(self.out.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        q, k = _rotary(q, self.rotary_dim), _rotary(k, self.rotary_dim)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, n, w))


class CrossAttention(nn.Module):
    """Queries from the sequence, keys/values from the text tokens with `kv_heads` shared heads."""

    def __init__(self, width: int, heads: int, cond_dim: int, kv_heads: int):
        super().__init__()
        if heads % kv_heads:
            raise ValueError(f"heads ({heads}) must be a multiple of cross_kv_heads ({kv_heads})")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, width // heads
        self.q = nn.Linear(width, width, bias=False)
        self.kv = nn.Linear(cond_dim, 2 * kv_heads * self.head_dim, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        nn.init.zeros_(self.out.weight)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        q = self.q(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(cond).view(b, cond.shape[1], 2, self.kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, n, w))


class SwiGLU(nn.Module):
    def __init__(self, width: int, mult: int):
        super().__init__()
        hidden = width * mult
        self.proj_in = nn.Linear(width, 2 * hidden)
        self.proj_out = nn.Linear(hidden, width)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.proj_in(x).chunk(2, dim=-1)
        return self.proj_out(a * F.silu(g))


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        w = cfg.width
        self.norm1 = nn.LayerNorm(w, bias=False)
        self.attn = SelfAttention(w, cfg.heads, cfg.rotary_dim)
        self.norm2 = nn.LayerNorm(w, bias=False)
        self.cross = CrossAttention(w, cfg.heads, cfg.cond_dim, cfg.cross_kv_heads)
        self.norm3 = nn.LayerNorm(w, bias=False)
        self.ff = SwiGLU(w, cfg.ff_mult)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.cross(self.norm2(x), cond)
        return x + self.ff(self.norm3(x))


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        c, w = cfg.latent_channels, cfg.width
        self.emb_dim = w
        self.time_embed = make_embedding(cfg.time_embedding, cfg.time_feat_dim, w)
        self.cond_embed = None
        if cfg.cond_mlp:
            cd = cfg.cond_dim
            self.cond_embed = nn.Sequential(nn.Linear(cd, cd, bias=False), nn.SiLU(), nn.Linear(cd, cd, bias=False))
        self.pre_conv = nn.Conv1d(c, c, 1, bias=False)
        self.proj_in = nn.Linear(c, w, bias=False)
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.depth)])
        self.proj_out = nn.Linear(w, c, bias=False)
        self.post_conv = nn.Conv1d(c, c, 1, bias=False)
        for m in (self.pre_conv, self.post_conv, self.proj_out):
            nn.init.zeros_(m.weight)

    def new_scalar_embedding(self, kind: str | None = None, *, zero_init: bool = True) -> nn.Module:
        """An embedding of the same family as the t-embedding (for the student's s / omega); kind "shared":
        the t-embedding itself, weights shared (`SharedEmbedding`, the released SoundCTM-DiT's s-embedding)."""
        if kind == "shared":
            return SharedEmbedding(self.time_embed)
        return make_embedding(kind or self.cfg.time_embedding, self.cfg.time_feat_dim, self.emb_dim,
                              zero_init=zero_init)

    def last_layer(self) -> torch.Tensor:
        """theta_L for the adaptive DSM weight (Appendix C)."""
        return self.proj_out.weight

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor, extra_emb=None, *,
                return_features: bool = False):
        if x.ndim != 3 or x.shape[1] != self.cfg.latent_channels:
            raise ValueError(f"DiT expects x [B, {self.cfg.latent_channels}, T], got {tuple(x.shape)}")
        if cond.ndim != 3 or cond.shape[-1] != self.cfg.cond_dim:
            raise ValueError(f"DiT expects cond [B, L, {self.cfg.cond_dim}], got {tuple(cond.shape)}")
        emb = self.time_embed(c_noise)
        if extra_emb is not None:
            emb = emb + extra_emb
        h = x + self.pre_conv(x)
        h = self.proj_in(h.transpose(1, 2))  # [B, T, W]
        h = torch.cat([emb[:, None, :].to(h.dtype), h], dim=1)  # prepend the global token
        feats = []
        cond = cond.to(h.dtype)
        if self.cond_embed is not None:
            cond = self.cond_embed(cond)
        for blk in self.blocks:
            h = blk(h, cond)
            if return_features:
                feats.append(h[:, 1:].transpose(1, 2))
        out = self.proj_out(h[:, 1:]).transpose(1, 2)
        out = out + self.post_conv(out)
        return (out, feats) if return_features else out
