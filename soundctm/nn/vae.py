"""Gaussian waveform VAE in the style of the Descript Audio Codec, without the quantiser (App. C.2).

The paper's full-band teacher encodes 44.1 kHz mono audio with a fully convolutional DAC-style
encoder (dim 64, down-sampling rates [4, 4, 8, 8]) and decodes with a DAC-style decoder (dim 1536,
up-sampling rates [8, 8, 4, 4]); the quantiser is replaced by a diagonal Gaussian posterior with
64 latent channels (~63.5 M parameters). The `tiny-dac` preset is the same design scaled down
for the CPU tier (16 kHz, hop 256, 16 latent channels).

The CPU tier's default (`tiny` = `tiny-stft`, `architecture="stft"`) keeps that latent contract
(diagonal Gaussian posterior, 16 x N / 256 latents) but works in the STFT domain, which is far
cheaper per CPU second: `STFTEncoder` (log magnitude + compressed real / imaginary parts of a
1024-point STFT at hop 256 -> ConvNeXt stack -> posterior) and `ISTFTDecoder` (Vocos-style:
ConvNeXt stack -> per-frame log magnitude and phase -> inverse STFT).

The autoencoder owns its latent normalisation (per-channel mean / std measured on the training
set, rescaled to `sigma_data`): `encode` returns normalised latents and `decode` expects them, and
the statistics are saved in the same safetensors file as the weights.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from soundctm.audio import istft_same, log_mel, mel_filterbank, stft_magnitude, stft_same  # noqa: F401  (re-exported)
from soundctm.io import load_safetensors, save_safetensors

__all__ = [
    "VAEConfig",
    "vae_config",
    "VAE_PRESETS",
    "Snake",
    "ResidualUnit",
    "Encoder",
    "Decoder",
    "ConvNeXtBlock",
    "STFTEncoder",
    "ISTFTDecoder",
    "stft_same",
    "istft_same",
    "AudioAutoencoder",
    "count_parameters",
    "mel_filterbank",
    "log_mel",
    "stft_magnitude",
]


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of the DAC-style Gaussian VAE.

    encoder_dim: channels after the first encoder conv; doubled by every down-sampling stage.
    encoder_rates: strides of the encoder stages (their product is the hop).
    decoder_dim: channels after the first decoder conv; halved by every up-sampling stage.
    decoder_rates: strides of the decoder stages (product must equal the hop).
    latent_channels: C of the latent z: [B, C, N / hop].
    sample_rate: audio sample rate in Hz (metadata; the network itself is rate-agnostic).
    architecture: "dac" (the waveform conv VAE above) or "stft" (`STFTEncoder` / `ISTFTDecoder`:
      an STFT-domain encoder and a Vocos-style decoder that predicts log-magnitude and phase per
      frame and synthesises the waveform by inverse STFT). For "stft" the rates only define the
      hop (their product; no strided convolutions), encoder_dim / decoder_dim are the widths of
      the ConvNeXt stacks and the fields below apply.
    n_fft: STFT size of the "stft" architecture (window = n_fft, periodic Hann).
    encoder_blocks / decoder_blocks: ConvNeXt blocks of the "stft" encoder / decoder.
    phase: how the "stft" decoder makes phases: "absolute" (Vocos: a phase per frame and bin) or
      "integrated" (a phase-vocoder head: per frame and bin an instantaneous-frequency deviation
      from the bin's centre, accumulated over frames from a predicted initial phase, so a steady or
      gliding partial keeps a coherent phase from frame to frame).
    logvar_init: initial bias of the "stft" encoder's log-variance head (the posterior's starting
      width; the DAC encoder uses LOGVAR_INIT = -6).
    fourier_features: L > 0 feeds the "stft" decoder [z, sin(2^j z), cos(2^j z)] for j < L
      (NeRF-style positional encoding against the spectral bias of MLPs, so a partial's frequency
      can move smoothly with a latent coordinate); 0 feeds z alone.
    latent_convs: the released GaussianDAC's two weight-normalised 1x1 convolutions around the
      latent ("dac" only): `pre_conv` (2C -> 2C) on the encoder's posterior moments and `post_conv`
      (C -> C) before the decoder. Left out of `to_dict` while off, so existing checkpoints keep
      their checksums.
    """

    encoder_dim: int = 64
    encoder_rates: tuple[int, ...] = (4, 4, 8, 8)
    decoder_dim: int = 1536
    decoder_rates: tuple[int, ...] = (8, 8, 4, 4)
    latent_channels: int = 64
    sample_rate: int = 44100
    dilations: tuple[int, ...] = field(default=(1, 3, 9))
    architecture: str = "dac"
    n_fft: int = 1024
    encoder_blocks: int = 3
    decoder_blocks: int = 6
    phase: str = "absolute"
    logvar_init: float = -6.0
    fourier_features: int = 0
    latent_convs: bool = False

    def __post_init__(self):
        # accept lists (e.g. from JSON metadata) but store tuples so the config stays hashable
        for name in ("encoder_rates", "decoder_rates", "dilations"):
            object.__setattr__(self, name, tuple(int(r) for r in getattr(self, name)))
        if math.prod(self.encoder_rates) != math.prod(self.decoder_rates):
            raise ValueError(
                f"encoder rates {self.encoder_rates} and decoder rates {self.decoder_rates} "
                "must have the same product (the hop)"
            )
        if any(r < 1 for r in self.encoder_rates + self.decoder_rates):
            raise ValueError("rates must be positive integers")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown VAE architecture {self.architecture!r}; expected one of {ARCHITECTURES}")
        if self.latent_convs and self.architecture != "dac":
            raise ValueError("latent_convs (the GaussianDAC pre/post 1x1 convolutions) apply to the 'dac' architecture")
        if self.architecture == "stft":
            if self.n_fft < self.hop or (self.n_fft - self.hop) % 2:
                raise ValueError(
                    f"n_fft={self.n_fft} must be >= the hop {self.hop} and differ from it by an even number"
                )
            if min(self.encoder_blocks, self.decoder_blocks) < 0:
                raise ValueError("encoder_blocks / decoder_blocks must be >= 0")
            if self.phase not in PHASE_MODES:
                raise ValueError(f"unknown phase mode {self.phase!r}; expected one of {PHASE_MODES}")
        elif self.decoder_dim % (2 ** len(self.decoder_rates)) != 0:
            raise ValueError(
                f"decoder_dim={self.decoder_dim} must be divisible by 2**{len(self.decoder_rates)} "
                "(each up-sampling stage halves the channels)"
            )

    @property
    def hop(self) -> int:
        """Audio samples per latent frame."""
        return math.prod(self.encoder_rates)

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if self.architecture == "dac":
            # the "stft" fields do not apply: leave them out, so a DAC config has the same dict (and
            # checkpoints / cache keys the same checksums) as before the field existed
            for k in _STFT_ONLY_FIELDS:
                d.pop(k)
        if not self.latent_convs:  # a later option: absent while off (same dict and checksums as before it)
            d.pop("latent_convs")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VAEConfig:
        return cls(**d)


ARCHITECTURES = ("dac", "stft")
_STFT_ONLY_FIELDS = (
    "architecture",
    "n_fft",
    "encoder_blocks",
    "decoder_blocks",
    "phase",
    "logvar_init",
    "fourier_features",
)
PHASE_MODES = ("absolute", "integrated")

VAE_PRESETS: dict[str, VAEConfig] = {
    # App. C.2: encoder dim 64 rates [4,4,8,8]; decoder dim 1536 rates [8,8,4,4]; 64 latent channels;
    # 44.1 kHz; "63.5M parameters".
    "paper": VAEConfig(
        encoder_dim=64,
        encoder_rates=(4, 4, 8, 8),
        decoder_dim=1536,
        decoder_rates=(8, 8, 4, 4),
        latent_channels=64,
        sample_rate=44100,
    ),
    # tiny tier (soundctm.presets.TINY_AUDIO): 16 kHz, hop 256, 16 latent channels.
    # The original tiny design: the DAC waveform VAE scaled down (kept selectable by name).
    "tiny-dac": VAEConfig(
        encoder_dim=16,
        encoder_rates=(4, 4, 4, 4),
        decoder_dim=128,
        decoder_rates=(4, 4, 4, 4),
        latent_channels=16,
        sample_rate=16000,
    ),
}
# The tiny tier's default: "tiny-dac"'s hop and latent size (16 x N / 256) with an STFT-domain encoder
# + Vocos-style iSTFT decoder, far more transparent per CPU second. Width 128 with 2 / 4 ConvNeXt blocks
# (0.95 M parameters): on one CPU thread a small model trained for more steps beat a 4.3 M one (width
# 256, 3 / 6 blocks) in the same time.
VAE_PRESETS["tiny-stft"] = replace(VAE_PRESETS["tiny-dac"], encoder_dim=128, architecture="stft", n_fft=1024,
                                   encoder_blocks=2, decoder_blocks=4)
VAE_PRESETS["tiny"] = VAE_PRESETS["tiny-stft"]


def vae_config(name: str) -> VAEConfig:
    """Named architecture preset: "paper" (App. C.2), "tiny" (= "tiny-stft", the tiny tier's
    default) or "tiny-dac" (the tiny tier's original waveform DAC design)."""
    try:
        return VAE_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown VAE preset {name!r}; expected one of {sorted(VAE_PRESETS)}") from None


def count_parameters(module: nn.Module) -> int:
    """Number of trainable-parameter elements (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------
# building blocks


def _wn_conv(*args, **kwargs) -> nn.Conv1d:
    return weight_norm(nn.Conv1d(*args, **kwargs))


def _wn_conv_t(*args, **kwargs) -> nn.ConvTranspose1d:
    return weight_norm(nn.ConvTranspose1d(*args, **kwargs))


class _SnakeFn(torch.autograd.Function):
    """y = x + sin^2(a x) / a with a hand-written backward that keeps only x (saves memory and
    several element-wise passes on CPU): dy/dx = 1 + sin(2 a x), dy/da = (x sin(2 a x) - sin^2(a x) / a) / a.
    """

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x, alpha)
        inv = (alpha + 1e-9).reciprocal()
        return torch.addcmul(x, torch.sin(alpha * x).square_(), inv)

    @staticmethod
    def backward(ctx, gy):
        x, alpha = ctx.saved_tensors
        inv = (alpha + 1e-9).reciprocal()
        ax = alpha * x
        s2 = torch.sin(2 * ax)
        gx = gy + gy * s2 if ctx.needs_input_grad[0] else None
        ga = None
        if ctx.needs_input_grad[1]:
            sq = torch.sin(ax).square_()
            d = (x * s2 - sq * inv) * inv
            ga = (gy * d).sum(dim=(0, 2), keepdim=True)
        return gx, ga


class Snake(nn.Module):
    """Snake activation x + sin^2(alpha x) / alpha with a learnable alpha per channel.

    x: [B, C, T] -> [B, C, T].
    """

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "meta":
            a = self.alpha
            return x + (a + 1e-9).reciprocal() * torch.sin(a * x).pow(2)
        return _SnakeFn.apply(x, self.alpha)


class ResidualUnit(nn.Module):
    """Snake -> dilated conv7 -> Snake -> conv1, added to the input. x: [B, C, T] -> [B, C, T]."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        pad = 3 * dilation
        self.block = nn.Sequential(
            Snake(dim),
            _wn_conv(dim, dim, kernel_size=7, dilation=dilation, padding=pad),
            Snake(dim),
            _wn_conv(dim, dim, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class EncoderBlock(nn.Sequential):
    """Three residual units at `dim`, Snake, strided conv (kernel 2*stride) to `2*dim`."""

    def __init__(self, dim: int, stride: int, dilations=(1, 3, 9)):
        super().__init__(
            *[ResidualUnit(dim, d) for d in dilations],
            Snake(dim),
            _wn_conv(dim, 2 * dim, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )


class DecoderBlock(nn.Sequential):
    """Snake, transposed conv (kernel 2*stride) from `dim` to `dim // 2`, three residual units."""

    def __init__(self, dim: int, stride: int, dilations=(1, 3, 9)):
        out = dim // 2
        super().__init__(
            Snake(dim),
            _wn_conv_t(
                dim,
                out,
                kernel_size=2 * stride,
                stride=stride,
                padding=math.ceil(stride / 2),
                output_padding=stride % 2,
            ),
            *[ResidualUnit(out, d) for d in dilations],
        )


LOGVAR_INIT = -6.0


class Encoder(nn.Module):
    """Waveform -> posterior parameters. wav: [B, 1, N] -> (mean, logvar): [B, C, N / hop] each."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        d = cfg.encoder_dim
        layers: list[nn.Module] = [_wn_conv(1, d, kernel_size=7, padding=3)]
        for stride in cfg.encoder_rates:
            layers.append(EncoderBlock(d, stride, cfg.dilations))
            d *= 2
        head = _wn_conv(d, 2 * cfg.latent_channels, kernel_size=3, padding=1)
        with torch.no_grad():
            # start with a narrow posterior (std ~0.05) so early training is not drowned in sampling noise
            head.bias[cfg.latent_channels :].fill_(LOGVAR_INIT)
        layers += [Snake(d), head]
        self.net = nn.Sequential(*layers)
        self.out_dim = d
        c2 = 2 * cfg.latent_channels
        self.pre_conv = _wn_conv(c2, c2, kernel_size=1) if cfg.latent_convs else None

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(wav)
        if self.pre_conv is not None:
            h = self.pre_conv(h)
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)


class Decoder(nn.Module):
    """Latent (un-normalised) -> waveform in [-1, 1]. z: [B, C, T] -> wav: [B, 1, T * hop]."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        d = cfg.decoder_dim
        layers: list[nn.Module] = [_wn_conv(cfg.latent_channels, d, kernel_size=7, padding=3)]
        for stride in cfg.decoder_rates:
            layers.append(DecoderBlock(d, stride, cfg.dilations))
            d //= 2
        layers += [Snake(d), _wn_conv(d, 1, kernel_size=7, padding=3), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        c = cfg.latent_channels
        self.post_conv = _wn_conv(c, c, kernel_size=1) if cfg.latent_convs else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.post_conv is not None:
            z = self.post_conv(z)
        return self.net(z)


# ----------------------------------------------------------------------------------------------
# the "stft" architecture: STFT-domain encoder + Vocos-style iSTFT decoder


class ConvNeXtBlock(nn.Module):
    """Vocos / ConvNeXt-1D block: depthwise conv7 -> LayerNorm -> Linear(d, 3d) -> GELU ->
    Linear(3d, d) -> layer scale, added to the input. x: [B, d, T] -> [B, d, T]."""

    def __init__(self, dim: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, 3 * dim)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(3 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.pw2(self.act(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class _ConvNeXtStack(nn.Module):
    """conv embedding -> LayerNorm -> n ConvNeXt blocks -> LayerNorm. [B, c_in, T] -> [B, T, d]."""

    def __init__(self, c_in: int, dim: int, n_blocks: int, kernel_size: int = 7):
        super().__init__()
        self.embed = nn.Conv1d(c_in, dim, kernel_size=kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList([ConvNeXtBlock(dim, 1.0 / max(1, n_blocks)) for _ in range(n_blocks)])
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.embed(x).transpose(1, 2)).transpose(1, 2)
        for blk in self.blocks:
            h = blk(h)
        return self.final_norm(h.transpose(1, 2))


class STFTEncoder(nn.Module):
    """Waveform -> posterior parameters through the STFT. wav: [B, 1, N] -> (mean, logvar): [B, C, N / hop].

    Per frame (n_fft window, hop = prod(encoder_rates), `stft_same` framing) the features are the
    log magnitude and the compressed real / imaginary parts (sign(x) log(1 + |x|)) of the
    spectrum; a ConvNeXt stack over frames maps them to the Gaussian posterior.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.n_fft, self.hop = cfg.n_fft, cfg.hop
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        bins = cfg.n_fft // 2 + 1
        # a per-frame (kernel 1) embedding of the 3 x 513 features; the blocks mix neighbouring frames
        self.backbone = _ConvNeXtStack(3 * bins, cfg.encoder_dim, cfg.encoder_blocks, kernel_size=1)
        self.head = nn.Linear(cfg.encoder_dim, 2 * cfg.latent_channels)
        with torch.no_grad():
            self.head.bias[cfg.latent_channels :].fill_(cfg.logvar_init)
        self.out_dim = cfg.encoder_dim

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: [B, 1, N] -> [B, 3 (n_fft / 2 + 1), N / hop]."""
        spec = stft_same(wav, self.n_fft, self.hop, self.window)
        mag = spec.abs()
        comp = lambda v: torch.sign(v) * torch.log1p(v.abs())  # noqa: E731
        return torch.cat([torch.log(mag + 1e-5), comp(spec.real), comp(spec.imag)], dim=1)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.head(self.backbone(self.features(wav))).transpose(1, 2)
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)


class ISTFTDecoder(nn.Module):
    """Latent (un-normalised) -> waveform via a Vocos-style iSTFT head. z: [B, C, T] -> wav: [B, 1, T * hop].

    A ConvNeXt stack over latent frames predicts, per frame, log|S| (exp, capped at 1000) and a
    phase p (`config.phase`: directly, or integrated over frames from instantaneous-frequency
    deviations); S = |S| (cos p + i sin p) is inverted by `istft_same` and clamped to [-1, 1].
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.n_fft, self.hop = cfg.n_fft, cfg.hop
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.bins = cfg.n_fft // 2 + 1
        self.phase_mode = cfg.phase
        self.fourier = cfg.fourier_features
        c_in = cfg.latent_channels * (1 + 2 * self.fourier)
        self.backbone = _ConvNeXtStack(c_in, cfg.decoder_dim, cfg.decoder_blocks)
        n_out = 2 * self.bins if cfg.phase == "absolute" else 3 * self.bins
        self.head = nn.Linear(cfg.decoder_dim, n_out)
        # phase advance per hop of a partial at the centre of bin k: 2 pi k hop / n_fft
        centre = 2 * math.pi * torch.arange(self.bins, dtype=torch.float64) * cfg.hop / cfg.n_fft
        self.register_buffer("bin_advance", torch.remainder(centre, 2 * math.pi).float(), persistent=False)

    def phases(self, h: torch.Tensor) -> torch.Tensor:
        """Head output [B, (2|3) bins, T] -> phases [B, bins, T]."""
        if self.phase_mode == "absolute":
            return h[:, self.bins :]
        # integrated: phi_t = phi_0 + sum_{tau <= t} (bin advance + pi tanh(u_tau)), with phi_0
        # predicted from the first frame (the deviation of frame 0 is not used)
        dev = math.pi * torch.tanh(h[:, self.bins : 2 * self.bins])
        step = self.bin_advance[None, :, None] + dev
        step = torch.cat([torch.zeros_like(step[..., :1]), step[..., 1:]], dim=-1)
        return h[:, 2 * self.bins :, :1] + torch.cumsum(step, dim=-1)

    def spectrum(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z: [B, C, T] -> (log magnitude, phase): [B, n_fft / 2 + 1, T] each (`stft_same` framing)."""
        if self.fourier:
            zz = torch.cat([z * (2.0**j) for j in range(self.fourier)], dim=1)
            z = torch.cat([z, torch.sin(zz), torch.cos(zz)], dim=1)
        h = self.head(self.backbone(z)).transpose(1, 2)  # [B, (2|3) bins, T]
        return h[:, : self.bins], self.phases(h)

    def synthesise(self, logmag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """(log magnitude, phase) [B, bins, T] -> wav [B, 1, T * hop] in [-1, 1]."""
        mag = logmag.exp().clamp(max=1e3)  # a full-scale partial peaks near n_fft / 4 = 256
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
        return istft_same(spec, self.n_fft, self.hop, self.window).clamp(-1.0, 1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesise(*self.spectrum(z))


# ----------------------------------------------------------------------------------------------
# the autoencoder


class AudioAutoencoder(nn.Module):
    """Gaussian VAE (DAC-style waveform or STFT / iSTFT, per `config.architecture`) that owns its
    latent normalisation.

    Buffers: `latent_mean` [C], `latent_std` [C] (per-channel statistics of the posterior means on
    the training set) and `sigma_data` (scalar). Until `fit_normalisation` is called they are
    0 / 1 / 1, i.e. `encode` returns raw posterior means.

    Normalised latent: z = (mu - latent_mean) / latent_std * sigma_data.
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        if config.architecture == "stft":
            self.encoder, self.decoder = STFTEncoder(config), ISTFTDecoder(config)
        else:
            self.encoder, self.decoder = Encoder(config), Decoder(config)
        c = config.latent_channels
        self.register_buffer("latent_mean", torch.zeros(c))
        self.register_buffer("latent_std", torch.ones(c))
        self.register_buffer("sigma_data", torch.ones(()))
        self.register_buffer("normalisation_fitted", torch.zeros((), dtype=torch.bool))

    # -- geometry ------------------------------------------------------------------------------
    @property
    def hop(self) -> int:
        return self.config.hop

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def latent_frames(self, num_samples: int) -> int:
        self._check_length(num_samples)
        return num_samples // self.hop

    def _check_length(self, n: int) -> None:
        if n % self.hop != 0 or n <= 0:
            raise ValueError(
                f"audio length {n} is not a positive multiple of the VAE hop {self.hop} "
                f"(pad or crop to e.g. {max(1, round(n / self.hop)) * self.hop} samples)"
            )

    def _check_wav(self, wav: torch.Tensor) -> None:
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"expected mono audio of shape [B, 1, N], got {tuple(wav.shape)}")
        self._check_length(wav.shape[-1])

    def _check_latent(self, z: torch.Tensor) -> None:
        if z.dim() != 3 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected latents of shape [B, {self.latent_channels}, T], got {tuple(z.shape)}"
            )

    # -- raw posterior -------------------------------------------------------------------------
    def encode_posterior(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Un-normalised posterior. wav: [B, 1, N] -> (mean, logvar): [B, C, N / hop] each."""
        self._check_wav(wav)
        return self.encoder(wav)

    def decode_raw(self, mu: torch.Tensor) -> torch.Tensor:
        """Decode an un-normalised latent. mu: [B, C, T] -> wav: [B, 1, T * hop]."""
        self._check_latent(mu)
        return self.decoder(mu)

    # -- normalisation -------------------------------------------------------------------------
    def normalise(self, mu: torch.Tensor) -> torch.Tensor:
        """Raw latent -> normalised latent. mu: [B, C, T] -> [B, C, T]."""
        m = self.latent_mean.view(1, -1, 1)
        s = self.latent_std.view(1, -1, 1)
        return (mu - m) / s * self.sigma_data

    def unnormalise(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latent -> raw latent. z: [B, C, T] -> [B, C, T]."""
        m = self.latent_mean.view(1, -1, 1)
        s = self.latent_std.view(1, -1, 1)
        return z / self.sigma_data * s + m

    @torch.no_grad()
    def fit_normalisation(
        self,
        latents: torch.Tensor | Iterable[torch.Tensor],
        sigma_data: float,
        eps: float = 1e-5,
    ) -> None:
        """Measure per-channel mean / std of RAW latents (posterior means) and set `sigma_data`.

        latents: a tensor [N, C, T] or an iterable of [B, C, T] tensors (e.g. `encode_posterior`
        means over the training set). Afterwards `encode` returns latents with per-channel mean 0
        and std `sigma_data` on that set.
        """
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        if isinstance(latents, torch.Tensor):
            latents = [latents]
        c = self.latent_channels
        s1 = torch.zeros(c, dtype=torch.float64)
        s2 = torch.zeros(c, dtype=torch.float64)
        n = 0
        for z in latents:
            self._check_latent(z)
            z = z.detach().to("cpu", torch.float64)
            s1 += z.sum(dim=(0, 2))
            s2 += (z * z).sum(dim=(0, 2))
            n += z.shape[0] * z.shape[2]
        if n < 2:
            raise ValueError("need at least two latent frames to fit the normalisation")
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0.0) * n / (n - 1)
        std = var.sqrt().clamp_min(eps)
        dev = self.latent_mean.device
        self.latent_mean.copy_(mean.to(dev, torch.float32))
        self.latent_std.copy_(std.to(dev, torch.float32))
        self.sigma_data.fill_(float(sigma_data))
        self.normalisation_fitted.fill_(True)

    @torch.no_grad()
    def fit_normalisation_from_audio(self, batches: Iterable[torch.Tensor], sigma_data: float) -> None:
        """Convenience: `fit_normalisation` on the posterior means of audio batches [B, 1, N]."""
        self.fit_normalisation((self.encode_posterior(w)[0] for w in batches), sigma_data)

    # -- public encode / decode ----------------------------------------------------------------
    def encode(
        self, wav: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """wav: [B, 1, N] (N a multiple of `hop`) -> normalised latent z: [B, C, N / hop].

        Posterior mean by default; `sample=True` draws from the posterior.
        """
        mean, logvar = self.encode_posterior(wav)
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            mean = mean + (0.5 * logvar).exp() * noise
        return self.normalise(mean)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latent z: [B, C, T] -> wav: [B, 1, T * hop] in [-1, 1]."""
        self._check_latent(z)
        return self.decoder(self.unnormalise(z))

    def forward(
        self, wav: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass. wav: [B, 1, N] -> (reconstruction [B, 1, N], mean, logvar [B, C, N/hop])."""
        mean, logvar = self.encode_posterior(wav)
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + (0.5 * logvar).exp() * noise
        return self.decoder(z), mean, logvar

    # -- persistence ---------------------------------------------------------------------------
    def checksum(self) -> str:
        """Short sha256 (16 hex chars) over config, weights and normalisation buffers (cache keys)."""
        h = hashlib.sha256()
        h.update(repr(sorted(self.config.to_dict().items())).encode())
        for k, v in sorted(self.state_dict().items()):
            h.update(k.encode())
            t = v.detach().to("cpu").contiguous()
            if t.dtype == torch.bool:
                t = t.to(torch.uint8)
            h.update(t.numpy().tobytes())
        return h.hexdigest()[:16]

    def metadata(self) -> dict:
        return {
            "kind": "AudioAutoencoder",
            "config": self.config.to_dict(),
            "sigma_data": float(self.sigma_data),
            "normalisation_fitted": bool(self.normalisation_fitted),
        }

    def save(self, path: str | Path, extra_metadata: dict | None = None) -> Path:
        """Weights + normalisation buffers to safetensors; config and sigma_data in the metadata."""

        meta = self.metadata()
        if extra_metadata:
            meta["extra"] = extra_metadata
        sd = {k: (v.to(torch.uint8) if v.dtype == torch.bool else v) for k, v in self.state_dict().items()}
        return save_safetensors(path, sd, meta)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> AudioAutoencoder:
        """Rebuild from the config stored in the file and load weights + statistics (strict)."""

        tensors, meta = load_safetensors(path)
        if meta.get("kind") != "AudioAutoencoder" or "config" not in meta:
            raise ValueError(f"{path} is not an AudioAutoencoder checkpoint (metadata: {sorted(meta)})")
        model = cls(VAEConfig.from_dict(meta["config"]))
        if "normalisation_fitted" in tensors:
            tensors["normalisation_fitted"] = tensors["normalisation_fitted"].to(torch.bool)
        model.load_state_dict(tensors, strict=True)
        if abs(float(model.sigma_data) - float(meta["sigma_data"])) > 1e-6:
            raise ValueError(f"{path}: sigma_data in metadata and tensors disagree")
        return model.to(map_location).eval()
