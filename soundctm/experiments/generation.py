"""How a row turns prior noise into latents: its time grid and its sampler (one signature for all).

Kept apart from the runner because generated artifacts are keyed by a hash of this file (and of the
math and network modules), not of the runner's bookkeeping.
"""

from __future__ import annotations

import torch

from soundctm.edm import SIGMA_MAX, karras_sigmas
from soundctm.experiments.spec import Row
from soundctm.sampling import SAMPLERS, karras_steps

__all__ = ["row_grid", "sample_row"]


def row_grid(row: Row) -> torch.Tensor:
    """`steps` jumps of Algorithm 1 ("ctm"); the teacher's N-point Karras grid ("heun", N = steps);
    `steps` Euler steps on the Karras levels ending at sigma 0 ("euler"; steps = 1: sigma_max -> 0)."""
    if row.sampler == "ctm":
        return karras_steps(row.steps)
    if row.sampler == "heun":
        return karras_sigmas(row.steps)
    head = karras_sigmas(row.steps) if row.steps > 1 else torch.tensor([SIGMA_MAX])
    return torch.cat([head, torch.zeros(1)])


@torch.no_grad()
def sample_row(row: Row, model, z_T: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor, *,
               always_uncond: bool = False) -> torch.Tensor:
    """Latents [B, C, T] of `row`'s sampler from z_T [B, C, T] (on the model's device; the grid is computed
    in float64 on the CPU and moved there by the sampler). `always_uncond`: the student evaluates the
    unconditional branch even at nu = 1, as the official sampler does (for timing that cost)."""
    opts = {"omega": row.omega}
    if row.sampler == "ctm":
        opts.update(nu=row.nu, gamma=row.gamma, always_uncond=always_uncond)
    return SAMPLERS[row.sampler](model, z_T, row_grid(row), cond, uncond, **opts)
