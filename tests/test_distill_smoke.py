"""A 100-step CPU distillation smoke run on random latents with the tiny preset."""

import pytest
import torch

from soundctm.ctm import CTMLoss, _bcast, distill_losses, draw_distill, ema_update, make_ema
from soundctm.edm import karras_sigmas
from soundctm.presets import build_student, build_teacher
from soundctm.rng import example_generators

# The CTM loss on fixed probe draws (same z_0, t, s, u, omega, noise) must fall by at least this factor
# over 100 steps (measured on a 2-core CPU: d_teacher 0.479 -> 0.211, l2_s 0.0226 -> 0.0115).
FALL_FACTOR = {"d_teacher": 1.8, "l2_s": 1.6}
B = 4


def _probe(loss_fn, student, ema, z0, cond, uncond, sigmas, p):
    vals = []
    with torch.no_grad():
        for k in range(4):
            draws = draw_distill(example_generators(123, f"probe{k}", range(B)), sigmas, p.latent_shape,
                                 omega_range=p.omega_range, p_uncond=0.0, max_ode_steps=p.max_ode_steps)
            zt = z0 + _bcast(draws.times.t, z0) * draws.noise
            vals.append(float(loss_fn(student, ema, zt, draws.times, cond, uncond, draws.omega).mean()))
    return sum(vals) / len(vals)


@pytest.mark.slow
@pytest.mark.parametrize("distance", ["d_teacher", "l2_s"])
def test_ctm_loss_falls_on_random_latents(distance):
    torch.manual_seed(0)
    teacher = build_teacher("tiny-dit", seed=0)
    p = teacher.preset
    # a fixed, non-trivial teacher: random small weights in place of the zero-initialised output layers
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for prm in teacher.parameters():
            if prm.abs().sum() == 0 and prm.ndim > 1:
                prm.copy_(torch.randn(prm.shape, generator=g) * 0.05)
    teacher.requires_grad_(False).eval()
    student = build_student("tiny-dit", teacher=teacher)
    ema = make_ema(student)
    opt = torch.optim.RAdam(student.parameters(), lr=1e-3)
    sigmas = karras_sigmas(p.n_grid)
    loss_fn = CTMLoss(teacher, sigmas, distance=distance)
    z0 = torch.randn(B, *p.latent_shape, generator=g) * p.sigma_data
    cond = torch.nn.functional.normalize(torch.randn(B, *p.cond_shape, generator=g), dim=-1)
    uncond = torch.zeros(1, *p.cond_shape)
    before = _probe(loss_fn, student, ema, z0, cond, uncond, sigmas, p)
    for step in range(100):
        draws = draw_distill(example_generators(0, step, range(B)), sigmas, p.latent_shape,
                             omega_range=p.omega_range, p_uncond=p.p_uncond, max_ode_steps=p.max_ode_steps)
        out = distill_losses(student, ema, loss_fn, z0, cond, uncond, draws, dsm_weight=0.0)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        ema_update(ema, student, p.ema_mu)
        assert torch.isfinite(out["loss"])
    after = _probe(loss_fn, student, ema, z0, cond, uncond, sigmas, p)
    assert after * FALL_FACTOR[distance] < before, (before, after)
