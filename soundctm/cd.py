"""Consistency distillation baselines in the SoundCTM framework: ConsistencyTTA-style CD and AudioLCM-style
LCD (the peers of Tables 2, 7, 8 and Figs. 3, 6), distilled from our own teacher by the one training loop.

Consistency function (Song et al. 2023, Sec. 3 and App. C), read out from a `ctm.CTMStudent`'s network:
    f_theta(z, sigma, c, omega) = c_skip(sigma) z + c_out(sigma) NN(c_in(sigma) z, c_noise(sigma), c; emb_omega(omega))
    c_skip = sigma_d^2 / ((sigma - sigma_min)^2 + sigma_d^2)
    c_out = sigma_d (sigma - sigma_min) / sqrt(sigma_d^2 + sigma^2)
    c_in = 1 / sqrt(sigma^2 + sigma_d^2) (EDM),  c_noise = ln(sigma) / 4 (the teacher's)
so f(z, sigma_min) = z exactly (c_skip = 1, c_out = 0): the boundary condition. The student is the same
`CTMStudent` object SoundCTM trains (teacher-initialised network, zero-initialised omega embedding), so exports,
loading and the runner serve both; a CD student has no s, and its s-embedding is not used.

One distillation step (Song et al. 2023, Algorithm 2; Luo et al. 2023, Algorithm 1), per example i:
    n ~ U{0, ..., N - 1 - k} on the descending N-point grid, t = sigma_n, u = sigma_{n+k}
    omega ~ U[omega_range] (a fixed omega when the range is one point), caption dropout with p_uncond
    z_t = z_0 + t eps
    target   = f_ema(Solver(z_t, t, u; phi, omega), u)     k Heun steps of the CFG teacher, no grad
    estimate = f_theta(z_t, t)
    loss     = d(estimate, target)
objective "cd" (ConsistencyTTA): k = 1 (adjacent grid points), d = l2 (its "mse");
objective "lcm" (AudioLCM): k > 1 (the skipping-step solver), d = elementwise pseudo-Huber with c = 0.001
(its code). The target's weights are the EMA (sg(theta^-)); the EMA is also what training exports.

Multi-step sampling (Song et al. 2023, Algorithm 1) is `sampling.cm_sample`: x = f(z, tau_i); z = x +
sqrt(tau_{i+1}^2 - sigma_min^2) eps between evaluations, eps drawn per example.

Shapes: z [B, C, T]; sigma, omega [B]; cond [B, L, D].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from soundctm.ctm import apply_dropout, l2
from soundctm.edm import SIGMA_MIN, _bcast, as_batch, cfg_denoiser, heun_solve, precondition
from soundctm.rng import rand, randn

__all__ = ["OBJECTIVES", "CD_OBJECTIVES", "LCM_SKIP", "LCM_HUBER_C", "CD_OMEGA", "CMScalings", "consistency_fn",
           "ConsistencyJump", "CDDraws", "draw_cd", "CDLoss", "cd_losses", "pseudo_huber_elementwise"]

OBJECTIVES = ("ctm", "cd", "lcm")  # the distillation objectives of `train.distill.DistillTask`
CD_OBJECTIVES = ("cd", "lcm")  # the consistency-distillation ones (sampled with `sampling.cm_sample`)
LCM_SKIP = 4  # default skipping step k of "lcm" on the training grid (docs/distillation.md: why 4)
LCM_HUBER_C = 0.001  # AudioLCM's pseudo-Huber constant (elementwise)
CD_OMEGA = 4.0  # the fixed CFG scale of "cd" (ConsistencyTTA's inference omega, Table 2's)


class CMScalings:
    """c_skip, c_out, c_in, c_noise of a consistency model (Song et al. 2023, App. C) for sigma_data,
    sigma_min: c_skip(sigma_min) = 1 and c_out(sigma_min) = 0 exactly."""

    def __init__(self, sigma_data: float, sigma_min: float = SIGMA_MIN):
        if sigma_data <= 0 or sigma_min <= 0:
            raise ValueError(f"need sigma_data > 0 and sigma_min > 0, got {sigma_data}, {sigma_min}")
        self.sigma_data, self.sigma_min = float(sigma_data), float(sigma_min)

    def c_skip(self, t: torch.Tensor) -> torch.Tensor:
        sd2 = self.sigma_data ** 2
        return sd2 / ((t - self.sigma_min) ** 2 + sd2)

    def c_out(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_data * (t - self.sigma_min) / torch.sqrt(self.sigma_data ** 2 + t ** 2)

    def c_in(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 / torch.sqrt(t ** 2 + self.sigma_data ** 2)

    @staticmethod
    def c_noise(t: torch.Tensor) -> torch.Tensor:
        return torch.log(t) / 4


def consistency_fn(student, z: torch.Tensor, sigma, cond: torch.Tensor, omega) -> torch.Tensor:
    """f_theta(z, sigma, c, omega) (module docstring) of a `CTMStudent` (its `net`, `omega_embed`,
    `sigma_data`, `sigma_min`). sigma: scalar or [B], >= sigma_min. Returns [B, C, T]."""
    b = z.shape[0]
    sigma, omega = as_batch(sigma, b, z), as_batch(omega, b, z)
    sc = CMScalings(student.sigma_data, student.sigma_min)
    if torch.any(sigma < sc.sigma_min * (1 - 1e-6)):
        raise ValueError(f"the consistency function is defined for sigma >= sigma_min = {sc.sigma_min}")
    return precondition(sc, student.net, z, sigma, cond, student.omega_embed(omega))


class ConsistencyJump:
    """The consistency function as a jump: (z, t, s, cond, omega) -> f(z, t) (s unused), so Eq. (10)'s
    nu-guidance of `sampling.guided_jump` applies to it unchanged: the `jump` that `sampling.cm_sample` takes."""

    def __init__(self, student):
        self.student = student

    def __call__(self, z, t, s, cond, omega) -> torch.Tensor:
        return consistency_fn(self.student, z, t, cond, omega)


@dataclass(frozen=True)
class CDDraws:
    """Every random quantity of one CD step: grid indices n and n + k, their sigmas t > u, omega, caption
    dropout, eps ([B] each; noise [B, C, T])."""

    it: torch.Tensor
    iu: torch.Tensor
    t: torch.Tensor
    u: torch.Tensor
    omega: torch.Tensor
    drop: torch.Tensor
    noise: torch.Tensor

    def to(self, device) -> CDDraws:
        return CDDraws(*(x.to(device) for x in (self.it, self.iu, self.t, self.u, self.omega, self.drop,
                                                 self.noise)))


def draw_cd(generators: list[torch.Generator], sigmas: torch.Tensor, latent_shape: tuple[int, int], *, skip: int,
            omega_range: tuple[float, float], p_uncond: float) -> CDDraws:
    """The draws of a CD step from per-example generators (one per example index). sigmas: the descending
    training grid [N]; skip: k (1 for CD)."""
    n = sigmas.shape[0]
    if not 1 <= skip <= n - 1:
        raise ValueError(f"the skip k must be in [1, {n - 1}] on a {n}-point grid, got {skip}")
    b = len(generators)
    r = rand((b, 3), generators, dtype=torch.float64)
    it = torch.floor(r[:, 0] * (n - skip)).long().clamp_max(n - 1 - skip)
    iu = it + skip
    lo, hi = omega_range
    omega = (lo + (hi - lo) * r[:, 1]).float()
    drop = r[:, 2] < p_uncond
    noise = randn((b, *latent_shape), generators)
    return CDDraws(it, iu, sigmas[it], sigmas[iu], omega, drop, noise)


def pseudo_huber_elementwise(a: torch.Tensor, b: torch.Tensor, c: float = LCM_HUBER_C) -> torch.Tensor:
    """mean over elements of sqrt((a - b)^2 + c^2) - c (AudioLCM's loss). [B]."""
    return (torch.sqrt((a - b).pow(2) + c * c) - c).flatten(1).mean(1)


class CDLoss:
    """d(f_theta(z_t, t), f_ema(Solver(z_t, t, u; phi, omega), u)) per example [B] (module docstring).

    objective "cd": l2; "lcm": elementwise pseudo-Huber (c = `huber_c`, default 0.001). The teacher solve
    (Heun over the grid points from t to u, CFG omega with cond and uncond in one batched forward) and the
    EMA target run under no_grad."""

    def __init__(self, teacher, sigmas: torch.Tensor, objective: str = "cd", solver=heun_solve, *,
                 huber_c: float | None = None):
        if objective not in CD_OBJECTIVES:
            raise ValueError(f"unknown consistency-distillation objective {objective!r}; expected one of "
                             f"{CD_OBJECTIVES}")
        self.teacher, self.sigmas, self.objective, self.solver = teacher, sigmas, objective, solver
        self.huber_c = LCM_HUBER_C if huber_c is None else float(huber_c)

    def target(self, ema, z_t: torch.Tensor, d: CDDraws, cond, uncond, omega) -> torch.Tensor:
        """f_ema(Solver(z_t, t, u; phi, omega), u), no grad."""
        with torch.no_grad():
            den = cfg_denoiser(self.teacher, cond, uncond, omega)
            z_u = self.solver(den, z_t, d.t, d.u, sigmas=self.sigmas)
            return consistency_fn(ema, z_u, d.u, cond, omega)

    def distance(self, est: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.objective == "cd":
            return l2(est, target)
        return pseudo_huber_elementwise(est, target, self.huber_c)

    def __call__(self, student, ema, z_t: torch.Tensor, d: CDDraws, cond, uncond, omega) -> torch.Tensor:
        target = self.target(ema, z_t, d, cond, uncond, omega)
        return self.distance(consistency_fn(student, z_t, d.t, cond, omega), target)


def cd_losses(student, ema, loss: CDLoss, z0: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
              d: CDDraws) -> dict[str, torch.Tensor]:
    """One batch of consistency distillation (the loss `train.distill.DistillTask.losses` uses for the
    "cd" / "lcm" objectives): caption dropout, z_t = z_0 + t eps, the CD term. Returns scalars loss, cd."""
    cond_used = apply_dropout(cond, uncond, d.drop)
    z_t = z0 + _bcast(d.t, z0) * d.noise
    l_cd = loss(student, ema, z_t, d, cond_used, uncond, d.omega).mean()
    return {"loss": l_cd, "cd": l_cd.detach()}
