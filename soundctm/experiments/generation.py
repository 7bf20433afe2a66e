"""How a row turns prior noise into latents: its time grid and its sampler (one signature for all).

Kept apart from the runner because generated artifacts are keyed by a hash of this file (and of the
math and network modules), not of the runner's bookkeeping.
"""

from __future__ import annotations

import torch

from soundctm.cd import ConsistencyJump
from soundctm.edm import SIGMA_MAX, karras_sigmas
from soundctm.experiments.spec import Row
from soundctm.rng import derive_seed
from soundctm.sampling import SAMPLERS, karras_steps

__all__ = ["row_grid", "sample_row", "gamma_generators"]


def row_grid(row: Row) -> torch.Tensor:
    """`steps` jumps of Algorithm 1 ("ctm") or evaluations of the consistency function ("cm", the last
    one landing on sigma_min); the teacher's N-point Karras grid ("heun", N = steps);
    `steps` Euler steps on the Karras levels ending at sigma 0 ("euler"; steps = 1: sigma_max -> 0)."""
    if row.sampler in ("ctm", "cm"):
        return karras_steps(row.steps)
    if row.sampler == "heun":
        return karras_sigmas(row.steps)
    head = karras_sigmas(row.steps) if row.steps > 1 else torch.tensor([SIGMA_MAX])
    return torch.cat([head, torch.zeros(1)])


def gamma_generators(seeds) -> list[torch.Generator]:
    """The gamma noise of Algorithm 1 for items with prior-noise seeds `seeds`: item i's own CPU generator,
    seeded with derive_seed(seed_i, "gamma-noise") (as `soundctm generate` does), so a stochastic row's
    samples depend neither on the batching nor on the global RNG, and every gamma > 0 row draws the same
    standard-normal noise for the same item (scaled by its gamma)."""
    return [torch.Generator().manual_seed(derive_seed(int(s), "gamma-noise")) for s in seeds]


@torch.no_grad()
def sample_row(row: Row, model, z_T: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor, *,
               always_uncond: bool = False, seeds=None) -> torch.Tensor:
    """Latents [B, C, T] of `row`'s sampler from z_T [B, C, T] (on the model's device; the grid is computed
    in float64 on the CPU and moved there by the sampler). `always_uncond`: the student evaluates the
    unconditional branch even at nu = 1, as the official sampler does (for timing that cost). `seeds`: the
    items' prior-noise seeds; with them a gamma > 0 row's noise comes from `gamma_generators(seeds)`
    (without them, from the global RNG: for timing only)."""
    opts = {"omega": row.omega}
    if row.sampler == "ctm":
        opts.update(nu=row.nu, gamma=row.gamma, always_uncond=always_uncond)
        if row.gamma > 0 and seeds is not None:
            opts["generator"] = gamma_generators(seeds)
    elif row.sampler == "cm":  # re-noised between steps: the same per-item noise as a gamma > 0 row's
        opts.update(jump=ConsistencyJump(model), nu=row.nu, always_uncond=always_uncond)
        if seeds is not None:
            opts["generator"] = gamma_generators(seeds)
    return SAMPLERS[row.sampler](model, z_T, row_grid(row), cond, uncond, **opts)
