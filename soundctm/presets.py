"""Tier presets (frozen dataclasses), named after the paper's rows.

A tier is a preset, never a fork of the code: the `tiny` tier runs on any CPU in minutes,
the `paper` tier uses the paper's architectures and data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from soundctm.cmdline import CLIError, Parser, run
from soundctm.ctm import CTMStudent
from soundctm.edm import Precond
from soundctm.nn.dit import DiT, DiTConfig
from soundctm.nn.unet import UNet1D, UNetConfig


@dataclass(frozen=True)
class AudioSpec:
    """Audio format of a tier: sample rate, clip length and the VAE's hop (samples per latent frame)."""

    name: str
    sample_rate: int
    clip_samples: int
    hop: int
    latent_channels: int

    @property
    def latent_frames(self) -> int:
        return self.clip_samples // self.hop

    @property
    def clip_seconds(self) -> float:
        return self.clip_samples / self.sample_rate


# tiny tier: 16 kHz, 2.048 s clips, VAE hop 256 -> 16 x 128 latents.
TINY_AUDIO = AudioSpec("tiny", sample_rate=16000, clip_samples=32768, hop=256, latent_channels=16)
# paper tier, full band (Sec. 4.2, App. C.2): 44.1 kHz mono, 10.03 s, DAC-style VAE rates [4,4,8,8]
# (hop 1024) -> 64 x 432 latents.
PAPER_AUDIO = AudioSpec("paper", sample_rate=44100, clip_samples=442368, hop=1024, latent_channels=64)

# (A tier's audio format is its field `soundctm.experiments.tier.Tier.audio`, not a lookup by tier name.)


# ------------------------------------------------------------------------------------------------
# Model presets


_RECIPE = {"export": False}  # field metadata: a training-recipe field, left out of exports


@dataclass(frozen=True)
class ModelPreset:
    """A teacher/student backbone preset with its EDM and distillation settings (Appendix C).

    The tiny presets cap the teacher's Heun solve at 8 grid steps (`max_ode_steps`) so that a
    distillation step stays under a second on a 2-core CPU; the paper presets use the paper's 39.

    The fields after `omega_embedding` are this repository's training recipe for the preset, read by
    `soundctm.train.config.resolve_config` and `soundctm train-teacher` / `distill`: no code asks which tier a
    preset belongs to. They are not part of the model, so an export leaves them out (`RECIPE_FIELDS`, metadata
    "export": False; `train.checkpoint.preset_from_metadata` takes them from the registered preset of the
    name) and they do not take part in comparisons: adding them changed no export's bytes.
    """

    name: str
    arch: str  # "dit" | "unet"
    backbone: object  # DiTConfig | UNetConfig
    latent_shape: tuple[int, int]  # (C, T)
    cond_shape: tuple[int, int]  # (L, D)
    sigma_data: float
    ema_mu: float  # student EMA rate (0.999 UNet, 0.96 DiT; Secs. 4.1, 4.2)
    omega_range: tuple[float, float] = (2.0, 5.0)
    dsm_weight: float = 1.0
    p_uncond: float = 0.1
    n_grid: int = 40
    max_ode_steps: int | None = None  # None: up to N - 1 = 39 Heun steps t -> u (App. C)
    lr: float = 8e-5
    # the student's s and omega embeddings (`CTMStudent`): None = a zero-initialised embedding of the
    # t-embedding's family, "shared" = the t-embedding itself (weights shared); omega: any
    # `soundctm.nn.embed.make_embedding` kind ("guidance-sinusoidal": parameter-free, no MLP)
    s_embedding: str | None = None
    omega_embedding: str = "fourier-fixed"
    # ---- training recipe (not exported, not compared)
    # default lr of a teacher trained from scratch (tiny: 1e-3, minutes on a CPU)
    teacher_lr: float = field(default=1e-4, compare=False, metadata=_RECIPE)
    # default lr of a distillation; None: `lr` (the paper's). tiny: 2e-4, larger than the paper's 8e-5 (for the
    # 1B models and days of GPU time) to fit a CPU budget
    student_lr: float | None = field(default=None, compare=False, metadata=_RECIPE)
    # the package's built-in data source (`TrainConfig.data`) whose latents and conditioning fit this preset,
    # and whose recipes (`train.teacher.tiny_teacher_config`, `train.distill.tiny_student_config`) the command
    # lines start from; None: none (the preset needs its own latent cache; only "synthetic" data serves it)
    corpus: str | None = field(default=None, compare=False, metadata=_RECIPE)

    def student_options(self) -> dict:
        """Keyword arguments of `CTMStudent` for this preset's layout."""
        return {"s_embedding": self.s_embedding, "omega_embedding": self.omega_embedding}

    @property
    def distill_lr(self) -> float:
        """The default lr of a distillation (`student_lr`, else the paper's `lr`)."""
        return self.lr if self.student_lr is None else self.student_lr


RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(ModelPreset) if not f.metadata.get("export", True))
# the tiny presets' recipe: teachers from scratch in minutes on a CPU, students at a CPU budget, the tiny corpus
_TINY_RECIPE = {"teacher_lr": 1e-3, "student_lr": 2e-4, "corpus": "tiny"}


def _presets() -> dict[str, ModelPreset]:
    tiny_c, tiny_t = TINY_AUDIO.latent_channels, TINY_AUDIO.latent_frames
    return {
        "tiny-dit": ModelPreset(
            "tiny-dit", "dit",
            DiTConfig(latent_channels=tiny_c, width=64, depth=4, heads=2, cond_dim=64, cross_kv_heads=1,
                      rotary_dim=16, ff_mult=4, time_feat_dim=64),
            latent_shape=(tiny_c, tiny_t), cond_shape=(1, 64), sigma_data=0.5, ema_mu=0.96, dsm_weight=0.2,
            max_ode_steps=8, **_TINY_RECIPE),
        "tiny-unet": ModelPreset(
            "tiny-unet", "unet",
            UNetConfig(latent_channels=tiny_c, channels=(48, 96), layers_per_block=1, attn_levels=(False, True),
                       head_dim=32, cond_dim=64, time_feat_dim=64, groups=8),
            latent_shape=(tiny_c, tiny_t), cond_shape=(32, 64), sigma_data=0.5, ema_mu=0.999, max_ode_steps=8,
            **_TINY_RECIPE),
        # SoundCTM-DiT-1B (Sec. 4.2, App. C.2): one L2-normalised 512-d CLAP token, 64 x 432 latents.
        "paper-dit": ModelPreset(
            "paper-dit", "dit", DiTConfig(), latent_shape=(64, 432), cond_shape=(1, 512), sigma_data=0.5,
            ema_mu=0.96, dsm_weight=0.2),
        # The released SoundCTM-DiT-1B (ac_v1_iclr, the paper's model; `soundctm convert`): the paper-dit
        # backbone plus the layout of the official code (stable-audio-tools' DiT): a Linear-SiLU-Linear
        # MLP on the CLAP token, s embedded by the t-embedding itself, omega by a parameter-free
        # sinusoidal embedding added to the global token.
        "paper-dit-official": ModelPreset(
            "paper-dit-official", "dit", DiTConfig(cond_mlp=True), latent_shape=(64, 432), cond_shape=(1, 512),
            sigma_data=0.5, ema_mu=0.96, dsm_weight=0.2, s_embedding="shared",
            omega_embedding="guidance-sinusoidal"),
        # SoundCTM-UNet (Sec. 4.1, App. C.1): SD-1.5-style widths, FLAN-T5-Large tokens, sigma_data 0.25;
        # AudioLDM's 8 x 256 x 16 latent is flattened to 128 channels x 256 frames for the 1-D UNet.
        "paper-unet": ModelPreset(
            "paper-unet", "unet", UNetConfig(), latent_shape=(128, 256), cond_shape=(64, 1024), sigma_data=0.25,
            ema_mu=0.999, dsm_weight=1.0),
    }


def model_preset(name: str) -> ModelPreset:
    presets = _presets()
    if name not in presets:
        raise ValueError(f"unknown model preset {name!r}; expected one of {sorted(presets)}")
    return presets[name]


def build_backbone(preset: ModelPreset):
    if preset.arch == "dit":
        return DiT(preset.backbone)
    if preset.arch == "unet":
        return UNet1D(preset.backbone)
    raise ValueError(f"unknown architecture {preset.arch!r}")


def build_teacher(name: str, seed: int = 0, device=None):
    """A randomly initialised EDM teacher (`soundctm.edm.Precond`) for preset `name`."""


    p = model_preset(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device(device or "cpu"):
            teacher = Precond(build_backbone(p), p.sigma_data)
    teacher.latent_shape, teacher.cond_shape, teacher.preset = p.latent_shape, p.cond_shape, p
    return teacher


def build_student(name: str, seed: int = 0, device=None, teacher=None):
    """A student (`soundctm.ctm.CTMStudent`) for preset `name`: from `teacher` if given, else random."""


    p = model_preset(name)
    teacher = teacher if teacher is not None else build_teacher(name, seed, device)
    dev = device or next(teacher.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        with torch.device(dev):
            student = CTMStudent.from_teacher(teacher, **p.student_options())
    student.latent_shape, student.cond_shape, student.preset = p.latent_shape, p.cond_shape, p
    return student


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _params(argv) -> int:
    ap = Parser(prog="soundctm params", description=main.__doc__)
    ap.add_argument("presets", nargs="*", help="preset names (default: all)")
    args = ap.parse_args(argv)
    known = _presets()
    unknown = [n for n in args.presets if n not in known]
    if unknown:
        raise CLIError(f"unknown model preset {unknown[0]!r}; expected one of {sorted(known)}")
    names = args.presets or sorted(known)
    w = max(12, *(len(n) for n in names))
    print(f"{'preset':{w}s} {'teacher':>16s} {'student':>16s}")
    for name in names:
        t = build_teacher(name, device="meta")
        s = build_student(name, device="meta", teacher=t)
        print(f"{name:{w}s} {count_parameters(t):16,d} {count_parameters(s):16,d}")
    return 0


def main(argv=None) -> int:
    """`soundctm params`: parameter counts of every model preset, built on the meta device."""
    return run("soundctm params", _params, argv)
