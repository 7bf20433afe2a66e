"""One of each: the sampler signature shared by teacher and student, the one preconditioning and the one
CFG batching (`soundctm.edm`), the Conditioner, the one learning-rate schedule, the one lognormal sigma draw
and the one mel front end."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from conftest import randomize_

from soundctm.audio import LogMel, log_mel, mel_filterbank
from soundctm.edm import (
    P_MEAN,
    P_STD,
    cfg_denoiser,
    cfg_forward,
    heun_solve,
    karras_sigmas,
    lognormal_sigma,
    precondition,
)
from soundctm.nn.text import Conditioner, TinyAudioConfig, TinyCLAP, TinyTextConfig, encode_conditioning
from soundctm.presets import build_student, build_teacher
from soundctm.rng import example_generators, prior_noise, rand, randn
from soundctm.sampling import SAMPLERS, euler_sample, heun_sample, karras_steps, sample, sample_seeded
from soundctm.train.config import lr_at
from soundctm.train.teacher import teacher_draws

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_sampler_has_the_one_signature():
    for name, fn in SAMPLERS.items():
        params = list(inspect.signature(fn).parameters.values())
        assert [p.name for p in params[1:5]] == ["z_T", "sigmas", "cond", "uncond"], name
        assert params[4].default is None and "omega" in inspect.signature(fn).parameters, name
        assert all(p.kind is p.KEYWORD_ONLY for p in params[5:]), name


def test_one_preconditioning_serves_teacher_student_and_consistency_function():
    from soundctm.cd import CMScalings, consistency_fn

    teacher = randomize_(build_teacher("tiny-unet"), 1, scale=0.05).eval()
    student = randomize_(build_student("tiny-unet", teacher=teacher), 2, scale=0.05).eval()
    c, t = teacher.latent_shape
    g = torch.Generator().manual_seed(0)
    z, cond = torch.randn(2, c, t, generator=g), torch.randn(2, *teacher.cond_shape, generator=g)
    sig, s, w = torch.tensor([0.5, 7.0]), torch.tensor([0.1, 2.0]), torch.tensor([1.0, 4.0])
    with torch.no_grad():
        d, feats = precondition(teacher.scalings, teacher.net, z, sig, cond, return_features=True)
        assert torch.equal(teacher(z, sig, cond), d) and all(map(torch.equal, teacher.features(z, sig, cond), feats))
        extra = student.s_embed(student.scalings.safe_c_noise(s, student.sigma_min)) + student.omega_embed(w)
        assert torch.equal(student.g(z, sig, s, cond, w), precondition(student.scalings, student.net, z, sig, cond,
                                                                        extra))
        cm = CMScalings(student.sigma_data, student.sigma_min)
        assert torch.equal(consistency_fn(student, z, sig, cond, w),
                           precondition(cm, student.net, z, sig, cond, student.omega_embed(w)))


def test_cfg_forward_is_one_batched_call_of_cond_and_uncond():
    calls = []

    def fn(z, t, cond, w):
        calls.append((z.shape[0], cond.dtype))
        return z * t[:, None, None] + cond.sum((1, 2)).to(z.dtype)[:, None, None] * w[:, None, None]

    z, t, w = torch.randn(3, 2, 4), torch.rand(3) + 0.5, torch.tensor([1.0, 2.0, 3.0])
    cond, unc = torch.randn(3, 5, 6, dtype=torch.float64), torch.randn(1, 5, 6)
    out_c, out_u = cfg_forward(fn, z, t, (cond, unc), w)
    assert calls == [(6, torch.float64)]  # one call, uncond expanded to the batch and cast to cond's dtype
    assert torch.equal(out_c, fn(z, t, cond, w)) and torch.equal(out_u, fn(z, t, unc.expand(3, -1, -1).double(), w))


def test_heun_sample_is_the_teachers_heun_solve_on_its_grid():
    teacher = randomize_(build_teacher("tiny-dit"), 1, scale=0.05).eval()
    c, t = teacher.latent_shape
    z = prior_noise([3, 4], (c, t))
    cond, unc = torch.randn(2, *teacher.cond_shape), torch.zeros(1, *teacher.cond_shape)
    grid = karras_sigmas(6)
    seen = []
    out = heun_sample(teacher, z, grid, cond, unc, omega=3.0, callback=lambda i, x: seen.append(i))
    with torch.no_grad():
        ref = heun_solve(cfg_denoiser(teacher, cond, unc, 3.0), z, grid[0], grid[-1], sigmas=grid)
    assert torch.equal(out, ref) and seen == list(range(5))
    # Euler on a two-point grid is one Euler step of Eq. (1)
    two = grid[:2]
    with torch.no_grad():
        den = cfg_denoiser(teacher, cond, unc, 3.0)
        step = z + (two[1] - two[0]) * (z - den(z, two[0])) / two[0]
    assert torch.allclose(euler_sample(teacher, z, two, cond, unc, omega=3.0), step)
    with pytest.raises(ValueError, match="uncond"):
        heun_sample(teacher, z, grid, cond, None, omega=3.0)


def test_sample_seeded_does_not_depend_on_the_batch_size():
    student = randomize_(build_student("tiny-dit"), 2, scale=0.05).eval()
    cond = torch.randn(5, *student.cond_shape)
    unc = torch.zeros(1, *student.cond_shape)
    grid = karras_steps(2)
    a = sample_seeded(sample, student, grid, cond, unc, range(5), batch=5, omega=2.0)
    b = sample_seeded(sample, student, grid, cond, unc, range(5), batch=2, omega=2.0)
    assert torch.allclose(a, b, atol=1e-5)
    z0 = prior_noise([0, 1, 2, 3, 4], tuple(student.latent_shape))
    assert torch.equal(a, sample(student, z0, grid, cond, unc, omega=2.0))


def test_conditioner_cond_and_uncond():
    clap = TinyCLAP(["dog", "barks", "rain"], TinyTextConfig(dim=16, layers=1, heads=2, max_len=6, embed_dim=16),
                    TinyAudioConfig(n_mels=16, channels=16, embed_dim=16))
    caps = ["dog barks", "rain"]
    pooled = Conditioner(clap, (1, 16))
    assert pooled.mode == "pooled" and pooled(caps).shape == (2, 1, 16) and pooled.uncond.shape == (1, 1, 16)
    assert torch.equal(pooled.uncond, encode_conditioning(clap, [""], "pooled", 1))
    tokens = Conditioner(clap, (8, 16))
    assert tokens.mode == "tokens" and tokens(caps).shape == (2, 8, 16) and tokens.uncond.shape == (1, 8, 16)
    assert torch.equal(tokens(caps), encode_conditioning(clap, caps, "tokens", 8))
    with pytest.raises(TypeError):
        pooled("one string")


def test_one_lr_schedule():
    assert lr_at(0, 1e-3, 10) == pytest.approx(1e-4) and lr_at(9, 1e-3, 10) == pytest.approx(1e-3)
    assert lr_at(500, 1e-3, 10) == 1e-3  # constant after warm-up (teacher, student)
    assert lr_at(10, 1.0, 10, 110, 0.05) == pytest.approx(1.0)
    assert lr_at(60, 1.0, 10, 110, 0.05) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(500, 1.0, 10, 110, 0.05) == pytest.approx(0.05)


def test_one_lognormal_sigma():
    gens = example_generators(7, 0, range(4))
    _, sigma, _ = teacher_draws(gens, (2, 3), 0.1)
    g2 = example_generators(7, 0, range(4))
    rand((4,), g2)  # the dropout draw comes first
    assert torch.equal(sigma, torch.exp(P_MEAN + P_STD * randn((4,), g2)))
    assert torch.equal(lognormal_sigma(torch.zeros(1)), torch.exp(torch.tensor([P_MEAN])))


def test_one_mel_front_end():
    x = torch.randn(2, 1, 4096, generator=torch.Generator().manual_seed(0))
    m = log_mel(x, 16000, 512, 32, 128)
    assert m.shape == (2, 32, 33) and torch.isfinite(m).all()
    fb = mel_filterbank(16000, 512, 32)
    assert fb.shape == (32, 257) and bool((fb.sum(1) > 0).all())
    assert LogMel(16000, 512, 128, 32)(x[:, 0]).shape == (2, 32, 33)
