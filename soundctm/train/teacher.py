"""EDM teacher training (VE formulation, Appendix C) and the text-dependence check.

One step (per example i of the global batch, all draws from (seed, step, i)):
    drop_i ~ Bernoulli(p_uncond)      caption replaced by the unconditional embedding
    ln sigma_i ~ N(-1.2, 1.2^2)       EDM lognormal training times
    eps_i ~ N(0, I)
    L = mean_i lambda(sigma_i) || z0_i - D(z0_i + sigma_i eps_i, sigma_i, c_i) ||^2
with an EMA of the teacher's weights (0.999, with warm-up) exported for inference.

The tiny tier's cached run: `soundctm.train.tiny.train_tiny_teacher(cache=None, preset="tiny-dit")`.
"""

from __future__ import annotations

import torch

from soundctm.ctm import apply_dropout, ema_update, make_ema
from soundctm.edm import edm_dsm_loss, sample_lognormal_sigma
from soundctm.presets import build_teacher
from soundctm.rng import example_generators, rand, randn
from soundctm.train.config import TrainConfig
from soundctm.train.data import pairs_for, worker_indices

__all__ = ["TeacherTask", "teacher_draws", "tiny_teacher_config"]

def teacher_draws(generators: list[torch.Generator], latent_shape: tuple[int, int], p_uncond: float):
    """(drop [B] bool, sigma [B], noise [B, C, T]) from per-example generators, in that order."""
    b = len(generators)
    drop = rand((b,), generators) < p_uncond
    sigma = sample_lognormal_sigma(b, generator=generators)
    noise = randn((b, *latent_shape), generators)
    return drop, sigma, noise


class TeacherTask:
    """The teacher's model, EMA and per-step loss for `run_training`."""

    export_kind = "teacher"
    log_keys = ("loss",)

    def __init__(self, cfg: TrainConfig, data, device):
        self.cfg, self.data, self.device = cfg, data, device
        self.model = build_teacher(cfg.preset, seed=cfg.seed, device=device)
        self.preset = self.model.preset
        self.ema = make_ema(self.model)
        self.uncond = data.uncond.to(device)

    def losses(self, step: int, rank: int, world: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        idx = worker_indices(step, cfg.batch_size, rank, world)
        z0, cond = self.data.batch(pairs_for(cfg.seed, idx, self.data.n_pairs))
        gens = example_generators(cfg.seed, step, idx, "teacher")
        drop, sigma, noise = teacher_draws(gens, self.preset.latent_shape, cfg.p_uncond)
        dev = self.device
        cond = apply_dropout(cond.to(dev), self.uncond, drop.to(dev))
        loss = edm_dsm_loss(self.model, z0.to(dev), cond, sigma=sigma.to(dev), noise=noise.to(dev)).mean()
        return {"loss": loss}

    def update_ema(self, step: int) -> None:
        """EMA with a warm-up, mu_k = min(mu, (1 + k) / (10 + k)), so a short run's EMA does not keep a
        large share of the initial weights (0.999^1500 = 0.22 without it)."""
        ema_update(self.ema, self.model, min(self.cfg.ema_mu, (1 + step) / (10 + step)))

    def post_step(self, step: int) -> dict:
        return {}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def export_extra(self) -> dict:
        return {}


# ------------------------------------------------------------ tiny entry point


def tiny_teacher_config(preset: str = "tiny-dit", **overrides) -> TrainConfig:
    """The settings `train_tiny_teacher` uses (CPU, a few minutes)."""
    base = dict(
        kind="teacher",
        preset=preset,
        steps=1500,
        batch_size=32,
        lr=1e-3,
        warmup_steps=50,
        checkpoint_every=250,
        data="tiny",
    )
    base.update(overrides)
    return TrainConfig(**base)
