"""Training settings (`TrainConfig`), their resolution from the model preset, the optimizer, the one
learning-rate schedule, and the gradient all-reduce: what the teacher and distillation tasks and the
loop share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from soundctm.cd import CD_OBJECTIVES, CD_OMEGA, LCM_SKIP, OBJECTIVES
from soundctm.ctm import DSM_WEIGHTINGS, REDUCTIONS, CTMLoss
from soundctm.nn.precision import AMP
from soundctm.presets import model_preset


@contextlib.contextmanager
def pinned_threads(n: int):
    """Run a block with `n` torch threads (restored afterwards).

    Training is bit-reproducible for a given seed, torch build and thread count, but not across
    thread counts (float reductions split differently, and the difference grows over training), so
    the tiny tier trains everything (components, teachers, students) with TRAIN_THREADS whatever
    `--threads` the user gives."""
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


TRAIN_THREADS = 1


__all__ = [
    "TRAIN_THREADS",
    "pinned_threads",
    "TrainConfig",
    "resolve_config",
    "config_from_dict",
    "make_optimizer",
    "lr_at",
    "allreduce_mean",
    "KINDS",
    "CHOICES",
    "KEY_OMIT_IF_DEFAULT",
    "BOOKKEEPING",
]

KINDS = ("teacher", "distill")
CHOICES = {
    "amp": AMP,
    "dsm_weighting": DSM_WEIGHTINGS,
    "k_sampling": ("per-example", "per-batch"),
    "loss_reduction": REDUCTIONS,
    "nonfinite": ("raise", "skip"),
    "objective": OBJECTIVES,
}
# Settings added after runs were first cached: left out of a run's key while at their default, so
# adding a setting never renames (and re-trains) the runs that do not use it.
KEY_OMIT_IF_DEFAULT = ("dsm_weighting", "k_sampling", "loss_reduction", "grid_to_zero", "huber_c", "nonfinite",
                       "objective", "skip_steps")
# SoundCTM-only settings: a consistency-distillation objective ("cd", "lcm") needs them at their defaults
CTM_ONLY = {"distance": "d_teacher", "gan": False, "dsm_weighting": "none", "k_sampling": "per-example",
            "loss_reduction": "sum-channels", "grid_to_zero": False, "t_max_fraction": 0.0, "s_end_fraction": 0.0}
KEY_OMIT_IF_DEFAULT += ("amp",)  # mixed precision, off by default (a later setting, like those above)
KEY_OMIT_IF_DEFAULT += ("lr_final_fraction", "export_ema_std")
KEY_OMIT_IF_DEFAULT += ("t_max_fraction", "s_end_fraction")
RESUMABLE_CHANGES = {"steps", "checkpoint_every", "keep_checkpoints", "threads", "export", "cache", "device",
                     "fidelity_items", "target_bank"}
BOOKKEEPING = ("threads", "checkpoint_every", "keep_checkpoints", "cache", "export", "fidelity_items", "target_bank")
TEACHER_EMA = 0.999  # EMA of the teacher's weights (EDM)
# (the default learning rates are the preset's: `ModelPreset.teacher_lr`, `ModelPreset.distill_lr`)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. None means "the preset's value" (filled in by `resolve_config`)."""

    kind: str = "teacher"  # "teacher" | "distill"
    preset: str = "tiny-dit"
    steps: int = 1000
    batch_size: int = 32  # global batch (split over workers)
    lr: float | None = None
    optimizer: str | None = None  # "adamw" | "radam"; teacher default adamw, student radam (App. C)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_final_fraction: float = 1.0  # cosine decay after warm-up to lr * this at the last step (1.0: constant)
    seed: int = 0
    ema_mu: float | None = None  # teacher: 0.999; student: preset.ema_mu (Eq. 7's sg EMA)
    # the exported weights of a student: None = the target EMA above (sg(theta) of Eq. 7, mu = ema_mu); a
    # float = a separate power-function EMA (EDM2, Karras et al. 2024) of that relative standard deviation
    # sigma_rel, whose averaging window grows with the run, so it suits any run length
    export_ema_std: float | None = None
    grad_clip: float = 1000.0
    p_uncond: float | None = None
    # distillation (Algorithm 2)
    distance: str | None = "d_teacher"  # the CTM distance (None for the "cd" / "lcm" objectives: theirs is fixed)
    omega_range: tuple[float, float] | None = None
    dsm_weight: float | None = None
    adaptive_dsm: bool = True
    max_ode_steps: int | None = None
    n_grid: int | None = None
    teacher_path: str | None = None
    gan: bool = False  # GAN term on decoded audio (soundctm.train.gan), off by default
    gan_weight: float = 1.0  # times the adaptive weight ||grad L_CTM|| / ||grad L_GAN|| (last layer)
    gan_start: int = 0  # first step with the GAN term
    gan_lr: float = 2e-4  # discriminator Adam lr (betas 0.5, 0.9)
    # the official implementation's choices, each selectable (defaults: ours; see docs/distillation.md)
    dsm_weighting: str = "none"  # student DSM: "none" (Eq. 8 as written) | "karras" (lambda(sigma) as the teacher)
    k_sampling: str = "per-example"  # ODE solver length k of t -> u: "per-example" | "per-batch" (one k per step)
    # where the jumps of few-step sampling are: the fraction of examples whose t is sigma_max (every sample's
    # start) and whose s is the grid's end (every sample's end); 0 = uniform on the grid (`ctm.draw_tus`)
    t_max_fraction: float = 0.0
    s_end_fraction: float = 0.0
    loss_reduction: str = "sum-channels"  # CTM distance over channels: "sum-channels" | "mean-channels"
    grid_to_zero: bool = False  # append sigma 0 to the training grid (s, u may be 0; the last solver step is Euler)
    huber_c: float | None = None  # pseudo-Huber c (None: 0.00054 sqrt(d), d = latent size, as iCT)
    nonfinite: str = "raise"  # a step with a non-finite loss or gradient: "raise" | "skip" (counted)
    # the distillation objective (soundctm.cd): "ctm" (SoundCTM, Algorithm 2), "cd" (ConsistencyTTA-style
    # consistency distillation: one Heun step between adjacent grid points, fixed omega 4 unless omega_range
    # says otherwise, l2), "lcm" (AudioLCM-style latent consistency distillation: a skipping-step solver over
    # `skip_steps` grid steps, omega-conditioned on omega_range, elementwise pseudo-Huber)
    objective: str = "ctm"
    skip_steps: int | None = None  # CD / LCD: grid steps k of the teacher solve (None: 1 for cd, LCM_SKIP for lcm)
    # mixed precision (soundctm.nn.precision): "off" (fp32), "bf16" or "fp16" autocast of every network's forward
    # (student, EMA, teacher); their outputs and therefore the losses are fp32; fp16 adds a gradient scaler
    amp: str = "off"
    # data: "tiny" (corpus latents + tiny CLAP conditioning) or "synthetic" (random latents and
    # conditioning, for tests and benchmarks)
    data: str = "tiny"
    cache: str | None = None
    synthetic_clips: int = 32
    # bookkeeping
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    # a distillation on the tiny data scores its exported weights against the teacher's ODE at every checkpoint
    # on this many validation captions (`soundctm.fidelity`; the curve lands in summary.json and fidelity.png);
    # 0: not at all. Bookkeeping: not part of a run's key.
    fidelity_items: int = 40
    # the teacher-target bank (soundctm.train.target_bank): the CTM target's teacher solves z_u stored once and
    # read back by every run with the same teacher, seed, draw settings and data. None: solve inline; "auto":
    # the bank under <cache or cache_dir()>/tiny/target-bank/; else a folder holding the banks. A hit is
    # the solve's exact bytes, so training is bit-identical either way. Bookkeeping: not part of a run's key.
    target_bank: str | None = None
    threads: int | None = None
    device: str = "cpu"
    export: bool = True
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["omega_range"] is not None:
            d["omega_range"] = list(d["omega_range"])
        return d


def config_from_dict(d: dict) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown training settings: {sorted(unknown)}")
    d = dict(d)
    if d.get("omega_range") is not None:
        d["omega_range"] = tuple(float(x) for x in d["omega_range"])
    return TrainConfig(**d)


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill every None from the model preset and check the values."""

    if cfg.kind not in KINDS:
        raise ValueError(f"unknown training kind {cfg.kind!r}; expected one of {KINDS}")
    p = model_preset(cfg.preset)
    teacher = cfg.kind == "teacher"
    lr = cfg.lr
    if lr is None:
        lr = p.teacher_lr if teacher else p.distill_lr
    out = dataclasses.replace(
        cfg,
        lr=float(lr),
        optimizer=cfg.optimizer or ("adamw" if teacher else "radam"),
        ema_mu=float(cfg.ema_mu if cfg.ema_mu is not None else (TEACHER_EMA if teacher else p.ema_mu)),
        p_uncond=float(cfg.p_uncond if cfg.p_uncond is not None else p.p_uncond),
        omega_range=tuple(float(x) for x in (cfg.omega_range or (
            (CD_OMEGA, CD_OMEGA) if cfg.objective == "cd" else p.omega_range))),
        dsm_weight=float(cfg.dsm_weight if cfg.dsm_weight is not None else p.dsm_weight),
        max_ode_steps=int(
            cfg.max_ode_steps if cfg.max_ode_steps is not None else (p.max_ode_steps or p.n_grid - 1)
        ),
        n_grid=int(cfg.n_grid or p.n_grid),
        teacher_path=str(Path(cfg.teacher_path).expanduser().resolve()) if cfg.teacher_path else None,
    )
    if out.optimizer not in ("adamw", "radam"):
        raise ValueError(f"unknown optimizer {out.optimizer!r}; expected 'adamw' or 'radam'")
    if out.objective in CD_OBJECTIVES:
        out = _resolve_cd(out)
    elif out.distance not in CTMLoss.DISTANCES:
        raise ValueError(f"unknown CTM distance {out.distance!r}; expected one of {CTMLoss.DISTANCES}")
    elif out.skip_steps is not None:
        raise ValueError("skip_steps is a setting of the consistency-distillation objectives 'cd' and 'lcm'")
    if out.data not in ("tiny", "synthetic"):
        raise ValueError(f"unknown data source {out.data!r}; expected 'tiny' or 'synthetic'")
    if out.data != "synthetic" and out.data != p.corpus:  # a built-in corpus serves the presets made for it
        raise ValueError(
            f"preset {out.preset!r} needs its own latent cache; data={out.data!r} only serves tiny presets"
        )
    for name in ("steps", "batch_size", "checkpoint_every"):
        if getattr(out, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(out, name)}")
    if not 0 <= out.p_uncond < 1 or not 0 <= out.ema_mu < 1 or out.lr <= 0:
        raise ValueError("need 0 <= p_uncond < 1, 0 <= ema_mu < 1 and lr > 0")
    if out.omega_range[0] > out.omega_range[1]:
        raise ValueError(f"omega_range must be (low, high), got {out.omega_range}")
    if not 1 <= out.max_ode_steps <= out.n_grid - 1:
        raise ValueError(f"max_ode_steps must be in [1, {out.n_grid - 1}], got {out.max_ode_steps}")
    if out.kind == "distill" and out.teacher_path is None and out.data != "synthetic":
        raise ValueError(
            "distillation needs --teacher (an exported teacher); only synthetic data may use a "
            "randomly initialised one"
        )
    if out.gan and out.kind != "distill":
        raise ValueError("the GAN term is a distillation option")
    for name, allowed in CHOICES.items():
        if getattr(out, name) not in allowed:
            raise ValueError(f"unknown {name} {getattr(out, name)!r}; expected one of {allowed}")
    for name in ("t_max_fraction", "s_end_fraction"):
        if not 0 <= getattr(out, name) < 1:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(out, name)}")
    if not 0 < out.lr_final_fraction <= 1:
        raise ValueError(f"lr_final_fraction must be in (0, 1], got {out.lr_final_fraction}")
    if out.export_ema_std is not None:
        if out.kind != "distill":
            raise ValueError("export_ema_std is a distillation setting (a teacher exports its EMA)")
        if not 0 < out.export_ema_std < 0.28:
            raise ValueError(f"export_ema_std (sigma_rel) must be in (0, 0.28), got {out.export_ema_std}")
    if out.fidelity_items < 0:
        raise ValueError(f"fidelity_items must be >= 0, got {out.fidelity_items}")
    if out.huber_c is not None and out.huber_c <= 0:
        raise ValueError(f"huber_c must be positive, got {out.huber_c}")
    if out.target_bank is not None:
        if out.kind != "distill" or out.objective != "ctm":
            raise ValueError("target_bank stores the teacher solves of SoundCTM distillation (kind 'distill', "
                             "objective 'ctm')")
        if not str(out.target_bank).strip():
            raise ValueError("target_bank must be None, 'auto' or a folder")
        if out.target_bank != "auto":
            out = dataclasses.replace(out, target_bank=str(Path(out.target_bank).expanduser().resolve()))
    return out


def _resolve_cd(out: TrainConfig) -> TrainConfig:
    """The "cd" / "lcm" objectives: the SoundCTM-only settings left at their defaults (the CTM distance
    resolves to None: the objective fixes its own), skip k from the objective, a grid without sigma 0."""
    if out.kind != "distill":
        raise ValueError(f"objective {out.objective!r} is a distillation objective (kind 'distill')")
    changed = sorted(k for k, v in CTM_ONLY.items() if getattr(out, k) != v and not (k == "distance"
                                                                                   and out.distance is None))
    if changed:
        raise ValueError(f"{changed} are SoundCTM (objective 'ctm') settings; objective {out.objective!r} has its "
                         "own loss (soundctm/cd.py)")
    if out.objective == "cd" and out.huber_c is not None:
        raise ValueError("huber_c is the pseudo-Huber constant of 'lcm' (or of the CTM loss); 'cd' uses l2")
    skip = out.skip_steps if out.skip_steps is not None else (1 if out.objective == "cd" else LCM_SKIP)
    if not 1 <= skip <= out.n_grid - 1:
        raise ValueError(f"skip_steps must be in [1, {out.n_grid - 1}], got {skip}")
    return dataclasses.replace(out, distance=None, skip_steps=int(skip))


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.RAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _dist():
    return dist if dist.is_available() and dist.is_initialized() else None


def allreduce_mean(tensors: list[torch.Tensor]) -> None:
    """In-place mean over workers (no-op in a single process)."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return
    w = dist.get_world_size()
    for t in tensors:
        dist.all_reduce(t)
        t.div_(w)




def lr_at(step: int, lr: float, warmup_steps: int = 0, total_steps: int | None = None,
          final_fraction: float = 1.0) -> float:
    """The learning-rate schedule of every trainer: linear warm-up over `warmup_steps` (lr (step + 1) /
    warmup), then a cosine decay from lr to lr * final_fraction at `total_steps` (final_fraction 1.0:
    constant after warm-up, as the teacher and the student train)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if final_fraction == 1.0 or total_steps is None:
        return lr
    p = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return lr * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))
