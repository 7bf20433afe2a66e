"""Random-weight stand-ins of the consistency-distillation peers' published networks, for timing only (Table 8):
the shapes of their public configurations, not checkpoint-compatible copies (no diffusion math in here).

- `UNet2DCond`: a diffusers-style UNet2DConditionModel (ResNet blocks with the time embedding, transformer
  blocks of self-attention over the H x W positions + cross-attention + GEGLU feed-forward, strided-conv
  down-sampling, nearest up-sampling, skip connections). ConsistencyTTA's lightweight TANGO UNet:
  `UNet2DConfig()` (block_out_channels 256/512/1024/1024, 2 layers per block, attention in the first three
  levels with 5/10/20/20 heads, cross-attention 1024; its easy_inference/tango_diffusion_light.json).
- `TextTransformer`: a transformer encoder of given depth / width / heads / feed-forward width over a fixed
  number of tokens (FLAN-T5-Large: 24 x 1024, 16 heads, gated FFN 2816 ~ a plain FFN of 1.5 x 2816 = 4224 in
  cost; BERT-base: 12 x 768, 12 heads, FFN 3072).
- `VAEDecoder`: the LDM autoencoder's decoder in 1-D or 2-D (conv_in, mid ResNet-attention-ResNet, per level
  num_res_blocks + 1 ResNet blocks and an up-sampling, GroupNorm-SiLU-conv_out). AudioLDM's 2-D mel VAE (z 8,
  ch 128, ch_mult 1/2/4) and AudioLCM's 1-D one (z 20, ch 384, ch_mult 1/2/4, kernel 5, one up-sampling).
- `HiFiGAN`: the HiFi-GAN V1 generator (transposed-conv up-sampling, multi-receptive-field ResNet blocks);
  AudioLDM's 16 kHz vocoder, and, with BigVGAN's rates and width (its SnakeBeta anti-aliased activations
  replaced by LeakyReLU: the convolutions, which dominate the cost, are the same), AudioLCM's.

`forward` signatures follow `soundctm.nn` (UNet2DCond: x [B, C, H, W], c_noise [B], cond [B, L, D],
extra_emb [B, E]); `UNet2DCond.new_scalar_embedding` / `last_layer` let `ctm.CTMStudent` wrap it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from soundctm.nn.embed import make_embedding

__all__ = ["UNet2DConfig", "UNet2DCond", "TextTransformer", "VAEDecoder", "HiFiGAN"]


def _norm(c: int, groups: int = 32) -> nn.GroupNorm:
    g = min(groups, c)
    while c % g:
        g -= 1
    return nn.GroupNorm(g, c, eps=1e-6)


def _conv(dims: int):
    return nn.Conv2d if dims == 2 else nn.Conv1d


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, (+ time embedding), GroupNorm-SiLU-conv, skip; 1-D or 2-D."""

    def __init__(self, cin: int, cout: int, dims: int = 2, emb_dim: int | None = None, kernel: int = 3):
        super().__init__()
        conv = _conv(dims)
        self.norm1, self.conv1 = _norm(cin), conv(cin, cout, kernel, padding=kernel // 2)
        self.emb = nn.Linear(emb_dim, cout) if emb_dim else None
        self.norm2, self.conv2 = _norm(cout), conv(cout, cout, kernel, padding=kernel // 2)
        self.skip = conv(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is not None:
            h = h + self.emb(F.silu(emb)).reshape(*h.shape[:2], *([1] * (h.ndim - 2)))
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


def _attention(q, k, v, heads: int) -> torch.Tensor:
    b, n, c = q.shape
    split = lambda x: x.reshape(b, x.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
    return F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(b, n, -1)


class Transformer(nn.Module):
    """Over the flattened positions of [B, C, ...]: proj_in, self-attention, (cross-attention to cond),
    GEGLU feed-forward (4x), proj_out, residual."""

    def __init__(self, c: int, heads: int, cond_dim: int | None = None):
        super().__init__()
        self.heads = heads
        inner = heads * (c // heads)
        self.norm = _norm(c)
        self.proj_in, self.proj_out = nn.Linear(c, inner), nn.Linear(inner, c)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(inner), nn.LayerNorm(inner), nn.LayerNorm(inner)
        self.qkv, self.out1 = nn.Linear(inner, 3 * inner, bias=False), nn.Linear(inner, inner)
        self.cross = cond_dim is not None
        if self.cross:
            self.q = nn.Linear(inner, inner, bias=False)
            self.kv = nn.Linear(cond_dim, 2 * inner, bias=False)
            self.out2 = nn.Linear(inner, inner)
        self.ff_in, self.ff_out = nn.Linear(inner, 8 * inner), nn.Linear(4 * inner, inner)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        shape = x.shape
        h = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        h = h + self.out1(_attention(*self.qkv(self.ln1(h)).chunk(3, -1), self.heads))
        if self.cross:
            h = h + self.out2(_attention(self.q(self.ln2(h)), *self.kv(cond.to(h.dtype)).chunk(2, -1), self.heads))
        a, g = self.ff_in(self.ln3(h)).chunk(2, -1)
        h = h + self.ff_out(a * F.gelu(g))
        return x + self.proj_out(h).transpose(1, 2).reshape(shape)


@dataclass(frozen=True)
class UNet2DConfig:
    """ConsistencyTTA's lightweight TANGO UNet (UNet2DConditionModel config) by default."""

    latent_channels: int = 8
    channels: tuple[int, ...] = (256, 512, 1024, 1024)
    heads: tuple[int, ...] = (5, 10, 20, 20)
    attn_levels: tuple[bool, ...] = (True, True, True, False)  # CrossAttnDownBlock2D x 3, DownBlock2D
    layers_per_block: int = 2
    cond_dim: int = 1024
    time_embedding: str = "sinusoidal"


class UNet2DCond(nn.Module):
    def __init__(self, cfg: UNet2DConfig = UNet2DConfig()):
        super().__init__()
        self.cfg = cfg
        ch0 = cfg.channels[0]
        self.emb_dim = emb = 4 * ch0
        self.time_embed = make_embedding(cfg.time_embedding, ch0, emb)
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch0, 3, padding=1)
        self.down, skips, c = nn.ModuleList(), [ch0], ch0
        for lvl, cout in enumerate(cfg.channels):
            for _ in range(cfg.layers_per_block):
                self.down.append(self._unit(c, cout, lvl))
                c = cout
                skips.append(c)
            if lvl < len(cfg.channels) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, 2, emb), Transformer(c, cfg.heads[-1], cfg.cond_dim),
                                  ResBlock(c, c, 2, emb)])
        self.up = nn.ModuleList()
        for lvl in reversed(range(len(cfg.channels))):
            cout = cfg.channels[lvl]
            for _ in range(cfg.layers_per_block + 1):
                self.up.append(self._unit(c + skips.pop(), cout, lvl))
                c = cout
            if lvl > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(c, c, 3, padding=1)))
        self.norm_out, self.conv_out = _norm(c), nn.Conv2d(c, cfg.latent_channels, 3, padding=1)

    def _unit(self, cin: int, cout: int, lvl: int) -> nn.ModuleList:
        mods = [ResBlock(cin, cout, 2, self.emb_dim)]
        if self.cfg.attn_levels[lvl]:
            mods.append(Transformer(cout, self.cfg.heads[lvl], self.cfg.cond_dim))
        return nn.ModuleList(mods)

    def new_scalar_embedding(self, kind: str | None = None, *, zero_init: bool = True) -> nn.Module:
        return make_embedding(kind or self.cfg.time_embedding, self.cfg.channels[0], self.emb_dim, zero_init=zero_init)

    def last_layer(self) -> torch.Tensor:
        return self.conv_out.weight

    @staticmethod
    def _run(unit, h, emb, cond):
        h = unit[0](h, emb)
        return unit[1](h, cond) if len(unit) > 1 else h

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor, extra_emb=None) -> torch.Tensor:
        emb = self.time_embed(c_noise)
        if extra_emb is not None:
            emb = emb + extra_emb
        h = self.conv_in(x)
        skips = [h]
        for m in self.down:
            h = m(h) if isinstance(m, nn.Conv2d) else self._run(m, h, emb, cond)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb), cond), emb)
        for m in self.up:
            h = m(h) if isinstance(m, nn.Sequential) else self._run(m, torch.cat([h, skips.pop()], 1), emb, cond)
        return self.conv_out(F.silu(self.norm_out(h)))


class TextTransformer(nn.Module):
    """Token embedding + pre-norm transformer encoder + final norm (+ a linear projection): ids [B, L] ->
    [B, L, out_dim]."""

    def __init__(self, layers: int, width: int, heads: int, ff: int, vocab: int = 32128, out_dim: int | None = None):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, heads, ff, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, out_dim) if out_dim and out_dim != width else nn.Identity()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(self.layers(self.embed(ids))))


class VAEDecoder(nn.Module):
    """The LDM autoencoder's decoder, z [B, z, ...] -> [B, out, ...] (1-D or 2-D); `up_levels`: the levels
    (counted from the input's resolution) followed by a 2x up-sampling."""

    def __init__(self, z_channels: int, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, out_channels: int,
                 dims: int = 2, kernel: int = 3, up_levels: tuple[int, ...] | None = None, mid_heads: int = 1):
        super().__init__()
        conv = _conv(dims)
        c = ch * ch_mult[-1]
        up_levels = tuple(range(len(ch_mult) - 1)) if up_levels is None else up_levels
        self.conv_in = conv(z_channels, c, kernel, padding=kernel // 2)
        self.mid = nn.ModuleList([ResBlock(c, c, dims, kernel=kernel), Transformer(c, mid_heads),
                                  ResBlock(c, c, dims, kernel=kernel)])
        blocks = []
        for i, mult in enumerate(reversed(ch_mult)):
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock(c, ch * mult, dims, kernel=kernel))
                c = ch * mult
            if i in up_levels:
                blocks += [nn.Upsample(scale_factor=2, mode="nearest"), conv(c, c, kernel, padding=kernel // 2)]
        self.blocks = nn.ModuleList(blocks)
        self.norm_out, self.conv_out = _norm(c), conv(c, out_channels, kernel, padding=kernel // 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid[2](self.mid[1](self.mid[0](self.conv_in(z))))
        for m in self.blocks:
            h = m(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class _MRF(nn.Module):
    """HiFi-GAN's ResBlock1: for each dilation d, x + conv(lrelu(conv_d(lrelu(x))))."""

    def __init__(self, c: int, k: int, dilations: tuple[int, ...]):
        super().__init__()
        self.c1 = nn.ModuleList(nn.Conv1d(c, c, k, dilation=d, padding=d * (k - 1) // 2) for d in dilations)
        self.c2 = nn.ModuleList(nn.Conv1d(c, c, k, padding=(k - 1) // 2) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for a, b in zip(self.c1, self.c2):
            x = x + b(F.leaky_relu(a(F.leaky_relu(x, 0.1)), 0.1))
        return x


class HiFiGAN(nn.Module):
    """HiFi-GAN V1 generator: mel [B, n_mels, frames] -> waveform [B, 1, frames * prod(rates)]."""

    def __init__(self, n_mels: int, rates: tuple[int, ...], kernels: tuple[int, ...], channels: int,
                 rb_kernels: tuple[int, ...] = (3, 7, 11), rb_dilations: tuple[int, ...] = (1, 3, 5)):
        super().__init__()
        self.pre = nn.Conv1d(n_mels, channels, 7, padding=3)
        self.ups, self.mrfs, c = nn.ModuleList(), nn.ModuleList(), channels
        for r, k in zip(rates, kernels):
            self.ups.append(nn.ConvTranspose1d(c, c // 2, k, stride=r, padding=(k - r) // 2))
            c //= 2
            self.mrfs.append(nn.ModuleList(_MRF(c, rk, rb_dilations) for rk in rb_kernels))
        self.post = nn.Conv1d(c, 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.pre(mel)
        for up, mrfs in zip(self.ups, self.mrfs):
            x = up(F.leaky_relu(x, 0.1))
            x = sum(m(x) for m in mrfs) / len(mrfs)
        return torch.tanh(self.post(F.leaky_relu(x)))
