"""Samplers (free functions): SoundCTM's Algorithm 1 (gamma- and nu-sampling), the teacher's Heun and Euler
solvers, the consistency models' multistep sampler (`cm_sample`, for the CD baselines of `soundctm.cd`), and
time grids.

Algorithm 1, for n = 0 .. N-1:
    t~_{n+1} = sqrt(1 - gamma^2) t_{n+1}
    z~       = nu G(z_{t_n}, c, omega, t_n, t~_{n+1}) + (1 - nu) G(z_{t_n}, empty, omega, t_n, t~_{n+1})  (Eq. 10)
    z_{t_{n+1}} = z~ + gamma t_{n+1} eps
The paper's grid ends at t_N = 0, where the noise term vanishes; our default grid
(`karras_steps`) ends on sigma_min as the official sampler does, and no noise is added after the
last jump either way. Jumps to 0 are allowed: the student's s-embedding never evaluates log(0).
"""

from __future__ import annotations

import torch

from soundctm.edm import RHO, SIGMA_MAX, SIGMA_MIN, as_batch, cfg_denoiser, cfg_forward, heun_solve, karras_sigmas
from soundctm.rng import GeneratorLike, prior_noise, randn, seeded_generators


def karras_steps(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO) -> torch.Tensor:
    """The n-step evaluation grid (Appendix C, "Evaluation Details"): n + 1 Karras levels from
    sigma_max down to sigma_min, i.e. n jumps, the last landing on sigma_min. Returns [n + 1]."""
    if n < 1:
        raise ValueError(f"need at least one sampling step, got {n}")
    return karras_sigmas(n + 1, sigma_min, sigma_max, rho)


def _check_grid(sigmas: torch.Tensor) -> torch.Tensor:
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32).flatten()
    if sigmas.numel() < 2:
        raise ValueError("a sampling grid needs at least two time points")
    if torch.any(sigmas[1:] >= sigmas[:-1]) or sigmas[-1] < 0 or sigmas[0] <= 0:
        raise ValueError(f"sampling grid must be strictly decreasing and non-negative, got {sigmas.tolist()}")
    return sigmas


def guided_jump(student, z: torch.Tensor, t, s, cond: torch.Tensor, uncond: torch.Tensor | None, omega,
                nu: float, *, always_uncond: bool = False) -> torch.Tensor:
    """Eq. (10): nu G(z, c) + (1 - nu) G(z, empty). With nu == 1 the unconditional branch is not
    evaluated, unless `always_uncond` (the official sampler always evaluates it; the result is then
    G(z, c) from the batched forward, for timing that cost); otherwise both run as ONE batched forward."""
    b = z.shape[0]
    t, s, w = as_batch(t, b, z), as_batch(s, b, z), as_batch(omega, b, z)
    if nu == 1.0 and not always_uncond:
        return student(z, t, s, cond, w)
    if uncond is None:
        raise ValueError("nu != 1 (or always_uncond) needs the unconditional embedding `uncond`")
    zc, zu = cfg_forward(student, z, t, s, (cond, uncond), w)
    if nu == 1.0:
        return zc
    return zu + nu * (zc - zu)


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")


@torch.no_grad()
def sample(student, z_T: torch.Tensor, sigmas: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None = None,
           *, omega=5.0, nu: float = 1.0, gamma: float = 0.0, generator: GeneratorLike = None,
           callback=None, always_uncond: bool = False) -> torch.Tensor:
    """Algorithm 1. z_T: [B, C, T] (already scaled by sigma_max); sigmas: descending grid [N + 1] (N jumps,
    e.g. `karras_steps(N)`); cond [B, L, D]; uncond [1 or B, L, D] (needed when nu != 1).

    gamma = 0 is deterministic given z_T; gamma = 1 is consistency-model sampling. `generator` (one, or
    one per example for batch-independent noise) drives the gamma noise. `callback(i, z)` after jump i.
    `always_uncond`: evaluate the unconditional branch even when nu = 1 (see `guided_jump`).
    Returns z at the last grid point.
    """
    _check_gamma(gamma)
    grid = _check_grid(sigmas).to(z_T.device)
    z = z_T
    n = grid.numel() - 1
    for i in range(n):
        t_n, t_next = grid[i], grid[i + 1]
        t_tilde = (1.0 - gamma ** 2) ** 0.5 * t_next
        z = guided_jump(student, z, t_n, t_tilde, cond, uncond, omega, nu, always_uncond=always_uncond)
        if gamma > 0 and i < n - 1:
            eps = randn(tuple(z.shape), generator, device=z.device, dtype=z.dtype)
            z = z + gamma * t_next * eps
        if callback is not None:
            callback(i, z)
    return z


def _teacher_denoiser(teacher, cond: torch.Tensor, uncond: torch.Tensor | None, omega):
    if uncond is None:
        if not bool(torch.all(torch.as_tensor(omega) == 1)):
            raise ValueError("CFG with omega != 1 needs the unconditional embedding `uncond`")
        return cfg_denoiser(teacher, cond, cond[:1], 1.0)
    return cfg_denoiser(teacher, cond, uncond, omega)


@torch.no_grad()
def heun_sample(teacher, z_T: torch.Tensor, sigmas: torch.Tensor, cond: torch.Tensor,
                uncond: torch.Tensor | None = None, *, omega=5.0, callback=None) -> torch.Tensor:
    """The teacher: Heun's method on the PF ODE (Eq. 1) over the descending grid `sigmas` (e.g. the
    N-point `karras_sigmas(40)`), CFG omega (cond and uncond in one batched forward). No 2nd-order
    correction on a step that lands on sigma 0. `callback(i, z)` after step i. Returns z at sigmas[-1]."""
    grid = _check_grid(sigmas).to(z_T.device)
    den = _teacher_denoiser(teacher, cond, uncond, omega)
    z = z_T
    for i in range(grid.numel() - 1):
        z = heun_solve(den, z, grid[i], grid[i + 1], sigmas=grid)
        if callback is not None:
            callback(i, z)
    return z


@torch.no_grad()
def euler_sample(teacher, z_T: torch.Tensor, sigmas: torch.Tensor, cond: torch.Tensor,
                 uncond: torch.Tensor | None = None, *, omega=5.0, callback=None) -> torch.Tensor:
    """The teacher with Euler steps on the PF ODE (Eq. 1): z <- z + (t_next - t) (z - D_omega(z, t)) / t."""
    grid = _check_grid(sigmas).to(z_T.device)
    den = _teacher_denoiser(teacher, cond, uncond, omega)
    z = z_T
    for i in range(grid.numel() - 1):
        t, t_next = grid[i], grid[i + 1]
        z = z + (t_next - t) * (z - den(z, t)) / t
        if callback is not None:
            callback(i, z)
    return z


@torch.no_grad()
def cm_sample(student, z_T: torch.Tensor, sigmas: torch.Tensor, cond: torch.Tensor,
              uncond: torch.Tensor | None = None, *, jump, omega=5.0, nu: float = 1.0, generator: GeneratorLike = None,
              callback=None, always_uncond: bool = False) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) of a CD / LCD student (`soundctm.cd`):
    for i = 0 .. n-1: x = f(z, tau_i) (nu-guided as Eq. 10, `guided_jump`); then, unless i is the last,
    z = x + sqrt(tau_{i+1}^2 - sigma_min^2) eps, a fresh eps every step (the re-noising that changes a sample's
    content with the step count). `jump`: the student's consistency function f as a jump (z, t, s, cond, omega)
    -> f(z, t), e.g. `soundctm.cd.ConsistencyJump(student)`; `student` gives sigma_min. sigmas: descending
    [n + 1], e.g. `karras_steps(n)`: f is evaluated at the first n levels and the result belongs to the last
    (sigma_min). `generator`: one per example for batch-independent noise (one generator, or None: the global
    RNG). `callback(i, x)` after evaluation i."""
    grid = _check_grid(sigmas).to(z_T.device)
    sigma_min = float(student.sigma_min)
    if bool(torch.any(grid[:-1] < sigma_min * (1 - 1e-6))):
        raise ValueError(f"the consistency function is evaluated at sigma >= sigma_min = {sigma_min}, got "
                         f"{grid[:-1].tolist()}")
    n = grid.numel() - 1
    z = z_T
    for i in range(n):
        x = guided_jump(jump, z, grid[i], grid[i], cond, uncond, omega, nu, always_uncond=always_uncond)
        if i < n - 1:
            eps = randn(tuple(x.shape), generator, device=x.device, dtype=x.dtype)
            z = x + (grid[i + 1] ** 2 - sigma_min ** 2).clamp_min(0).sqrt() * eps
        if callback is not None:
            callback(i, x)
    return x


# Every sampler: sampler(model, z_T, sigmas, cond, uncond=None, **options) -> z at sigmas[-1] ("cm" needs the
# option `jump`, the model's consistency function: `soundctm.cd.ConsistencyJump(model)`).
SAMPLERS = {"ctm": sample, "heun": heun_sample, "euler": euler_sample, "cm": cm_sample}


@torch.no_grad()
def sample_seeded(sampler, model, sigmas: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None,
                  seeds, *, batch: int = 40, **options) -> torch.Tensor:
    """Latents [B, C, T] from `sampler` (a SAMPLERS value) in batches of `batch`; example i's prior noise
    z_T comes from seeds[i] (`prior_noise`, created on cond's device), so the result does not depend on the
    batch size."""
    seeds = list(seeds)
    out = []
    for i in range(0, len(seeds), batch):
        z_T = prior_noise(seeds[i:i + batch], tuple(model.latent_shape), device=cond.device)
        out.append(sampler(model, z_T, sigmas, cond[i:i + batch], uncond, **options))
    return torch.cat(out)


def per_example_noise_like(z: torch.Tensor, seeds) -> torch.Tensor:
    """Noise shaped like z with row i from seed i (batch-split independent), on z's device."""
    return randn(tuple(z.shape), seeded_generators(seeds), device=z.device, dtype=z.dtype)


__all__ = ["karras_steps", "sample", "heun_sample", "euler_sample", "cm_sample", "SAMPLERS", "sample_seeded",
           "guided_jump", "per_example_noise_like"]
