"""Distillation fidelity: how far a student's deterministic samples land from its teacher's ODE solution.

SoundCTM's student is trained to jump along the teacher's probability-flow ODE (Eq. 1): its gamma = 0
sample from z_T (Algorithm 1, nu = 1) should land where the teacher's Heun solve with CFG omega lands
from the same z_T and caption. For item i, n student steps and guidance omega:

    err_i(n, omega) = || z_i(n, omega) - z*_i(omega) ||^2 / || z*_i(omega) ||^2

z*_i(omega) the teacher's Heun solve on the 40-point Karras grid (39 steps, CFG omega; `REFERENCE_GRID`),
in latent space. The omega response of a sampler is how far its sample moves between two guidance
scales, on the same measure: resp_i(a, b) = || z_i(a) - z_i(b) ||^2 / || z_i(b) ||^2 (b the larger).
A student that ignores omega has response 0 whatever its teacher's is.

Every quantity is per item, so its mean gets a bootstrap interval over items (`bootstrap_mean`).
`FidelityProbe` holds a fixed set of (z_T, caption) items and the teacher's references; the probe is
built once and scores any number of students or checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from soundctm.edm import karras_sigmas
from soundctm.rng import prior_noise
from soundctm.sampling import euler_sample, heun_sample, karras_steps, sample

__all__ = ["REFERENCE_GRID", "STEPS", "OMEGAS", "relative_sq_error", "bootstrap_mean", "FidelityProbe",
           "build_probe", "student_samples", "fidelity_errors", "teacher_euler1_errors", "omega_response",
           "summarize"]

REFERENCE_GRID = 40  # the teacher's reference: Heun on the 40-point Karras grid (39 steps)
STEPS = (1, 2, 4, 16)
OMEGAS = (2.0, 5.0)


def relative_sq_error(z: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    """Per item ||z - ref||^2 / ||ref||^2 over every non-batch dimension. [B] float64."""
    z, ref = torch.as_tensor(z).double(), torch.as_tensor(ref).double()
    if z.shape != ref.shape:
        raise ValueError(f"shapes differ: {tuple(z.shape)} vs {tuple(ref.shape)}")
    num = (z - ref).flatten(1).pow(2).sum(1)
    den = ref.flatten(1).pow(2).sum(1)
    if torch.any(den == 0):
        raise ValueError("a reference item is all zeros: the relative error is undefined")
    return (num / den).numpy()


def bootstrap_mean(values, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """The mean of per-item values with a percentile bootstrap interval over items:
    {"value", "lo", "hi", "level", "n_boot", "n"}."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no items")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), v.size, int(n_boot)]))
    means = v[rng.integers(0, v.size, size=(int(n_boot), v.size))].mean(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return {"value": float(v.mean()), "lo": float(lo), "hi": float(hi), "level": level, "n_boot": int(n_boot),
            "n": int(v.size)}


@dataclass
class FidelityProbe:
    """Fixed items and the teacher's references. z_T [B, C, T] (scaled by sigma_max); cond [B, L, D];
    uncond [1, L, D]; references[omega] = the teacher's Heun solve [B, C, T]."""

    z_T: torch.Tensor
    cond: torch.Tensor
    uncond: torch.Tensor
    seeds: tuple[int, ...]
    references: dict[float, torch.Tensor]

    @property
    def omegas(self) -> tuple[float, ...]:
        return tuple(sorted(self.references))


@torch.no_grad()
def build_probe(teacher, cond: torch.Tensor, uncond: torch.Tensor, seeds, *, omegas=OMEGAS,
                grid: int = REFERENCE_GRID) -> FidelityProbe:
    """Items i = (seeds[i], cond[i]): z_T from `prior_noise` (as every table's rows draw it), the teacher's
    Heun solve over `karras_sigmas(grid)` for each omega."""
    seeds = tuple(int(s) for s in seeds)
    if len(seeds) != cond.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {cond.shape[0]} conditionings")
    if not omegas:
        raise ValueError("need at least one omega")
    z_T = prior_noise(list(seeds), tuple(teacher.latent_shape), device=cond.device)
    refs = {float(w): heun_sample(teacher, z_T, karras_sigmas(grid), cond, uncond, omega=float(w))
            for w in omegas}
    return FidelityProbe(z_T, cond, uncond, seeds, refs)


@torch.no_grad()
def student_samples(student, probe: FidelityProbe, steps=STEPS) -> dict[tuple[float, int], torch.Tensor]:
    """{(omega, n): the student's gamma = 0, nu = 1 sample with n jumps (`karras_steps(n)`)} from the probe's z_T."""
    was_training = student.training
    student.eval()
    try:
        return {(w, int(n)): sample(student, probe.z_T, karras_steps(int(n)), probe.cond, probe.uncond, omega=w,
                                    nu=1.0, gamma=0.0)
                for w in probe.omegas for n in steps}
    finally:
        student.train(was_training)


def fidelity_errors(samples: dict[tuple[float, int], torch.Tensor], probe: FidelityProbe) -> dict:
    """{(omega, n): per-item relative squared error against the teacher's reference at omega}."""
    return {k: relative_sq_error(z, probe.references[k[0]]) for k, z in samples.items()}


@torch.no_grad()
def teacher_euler1_errors(teacher, probe: FidelityProbe) -> dict[float, np.ndarray]:
    """The teacher's single Euler step sigma_max -> 0 (CFG omega) against its own reference, per omega."""
    grid = torch.tensor([float(karras_sigmas(2)[0]), 0.0], device=probe.z_T.device)
    return {w: relative_sq_error(euler_sample(teacher, probe.z_T, grid, probe.cond, probe.uncond, omega=w),
                                 probe.references[w]) for w in probe.omegas}


def omega_response(by_omega: dict[float, torch.Tensor]) -> np.ndarray:
    """Per item ||z(a) - z(b)||^2 / ||z(b)||^2 between the smallest omega a and the largest b."""
    ws = sorted(by_omega)
    if len(ws) < 2:
        raise ValueError("the omega response needs samples at two omegas")
    return relative_sq_error(by_omega[ws[0]], by_omega[ws[-1]])


def summarize(student, probe: FidelityProbe, steps=STEPS, *, n_boot: int = 1000) -> dict:
    """The fidelity of `student` on `probe`: {"error": {"w5.0": {"1": dist, ...}}, "omega_response":
    {"1": dist, ...}, "teacher_omega_response": dist}, each dist a `bootstrap_mean` dict."""
    samples = student_samples(student, probe, steps)
    errs = fidelity_errors(samples, probe)
    out = {"error": {f"w{w:g}": {str(n): bootstrap_mean(errs[(w, n)], n_boot) for n in steps} for w in probe.omegas}}
    if len(probe.omegas) >= 2:
        out["omega_response"] = {str(n): bootstrap_mean(omega_response({w: samples[(w, n)] for w in probe.omegas}),
                                                        n_boot) for n in steps}
        out["teacher_omega_response"] = bootstrap_mean(omega_response(probe.references), n_boot)
    return out
