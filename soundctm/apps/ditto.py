"""DITTO-2 baseline on SoundCTM (Table 5, App. C.3): optimise the initial latent z_T, then sample.

As the paper ran it (DITTO-2 is not open source):
1. z_T-optimisation: Adam (lr 1.0, DITTO's best of 1, 1e-1, 1e-2, 5e-3) for 70 iterations on
   L(f(D(G(z_T, c, omega, T, t_N))), y): 1-step generation, omega = 3.5, nu = 1, gradients through the
   student and the decoder.
2. The final sample: Algorithm 1 with 16 steps, omega = 3.5, nu = 2, gamma = 0 or 0.2, from the optimised z_T.

Where the paper is silent, ours: z_T starts as the ordinary prior draw sigma_max * eps and Adam works on
z_T itself (that scale, as the paper writes "z_T"); the loss is the same per-clip loss as the guidance's
(MSE in dB^2 for intensity), summed over the batch (each clip's gradient is its own: Adam is elementwise,
so a clip's result does not depend on its batch); no gradient clipping; the last iterate is kept; the
gamma noise of the final sampling comes from the caller's generator (one per clip in the tables).
"""

from __future__ import annotations

import torch

from soundctm.apps.guidance import Decode, Feature, Loss, clean_estimate, mse_loss
from soundctm.rng import GeneratorLike
from soundctm.sampling import karras_steps, sample

__all__ = ["optimize_z_T", "ditto_sample", "LR", "ITERATIONS", "OMEGA", "FINAL_NU"]

LR, ITERATIONS, OMEGA, FINAL_NU = 1.0, 70, 3.5, 2.0


def optimize_z_T(student, z_T: torch.Tensor, cond: torch.Tensor, *, decode: Decode, feature: Feature,
                 target: torch.Tensor, loss: Loss = mse_loss, omega=OMEGA, lr: float = LR,
                 iterations: int = ITERATIONS, callback=None) -> torch.Tensor:
    """Adam on z_T through the 1-step student (G(z_T, c, omega, T, t_N), nu = 1) and the decoder.
    `callback(k, losses [B])` after iteration k. Returns the optimised z_T (detached)."""
    if iterations < 0 or lr <= 0:
        raise ValueError(f"need iterations >= 0 and lr > 0, got {iterations}, {lr}")
    grid = karras_steps(1)
    t_T, t_end = grid[0].to(z_T.device), grid[-1].to(z_T.device)
    z = z_T.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    with torch.enable_grad():
        for k in range(iterations):
            opt.zero_grad(set_to_none=True)
            losses = loss(feature(decode(clean_estimate(student, z, t_T, t_end, cond, omega))), target)
            (z.grad,) = torch.autograd.grad(losses.sum(), z)  # z only: frozen or not, no weight gets a .grad
            opt.step()
            if callback is not None:
                callback(k, losses.detach())
    return z.detach()


def ditto_sample(student, z_T: torch.Tensor, sigmas: torch.Tensor, cond: torch.Tensor,
                 uncond: torch.Tensor | None = None, *, decode: Decode, feature: Feature, target: torch.Tensor,
                 loss: Loss = mse_loss, omega=OMEGA, nu: float = FINAL_NU, gamma: float = 0.0,
                 lr: float = LR, iterations: int = ITERATIONS, generator: GeneratorLike = None,
                 optimized: torch.Tensor | None = None) -> torch.Tensor:
    """DITTO-2: `optimize_z_T`, then Algorithm 1 on `sigmas` (16 steps in Table 5) with omega, nu, gamma.
    `optimized`: an already optimised z_T (the optimisation does not depend on the final nu, gamma, grid)."""
    z_opt = optimized if optimized is not None else optimize_z_T(
        student, z_T, cond, decode=decode, feature=feature, target=target, loss=loss, omega=omega, lr=lr,
        iterations=iterations)
    return sample(student, z_opt, sigmas, cond, uncond, omega=omega, nu=nu, gamma=gamma, generator=generator)
