"""Sampling latency by number of steps (tiny-dit student, batch 1) and one teacher Heun solve.

    pytest bench --benchmark-only
"""

import pytest
import torch

from soundctm.edm import karras_sigmas
from soundctm.presets import build_student, build_teacher
from soundctm.rng import prior_noise
from soundctm.sampling import heun_sample, karras_steps, sample


@pytest.fixture(scope="module")
def models():
    teacher = build_teacher("tiny-dit").eval()
    student = build_student("tiny-dit", teacher=teacher).eval()
    c, t = student.latent_shape
    cond = torch.randn(1, *student.cond_shape)
    uncond = torch.zeros(1, *student.cond_shape)
    return teacher, student, prior_noise([0], (c, t)), cond, uncond


@pytest.mark.parametrize("steps,nu", [(1, 1.0), (2, 1.0), (4, 1.0), (8, 5.0), (16, 5.0)])
def test_student_sampling(benchmark, models, steps, nu):
    _, student, z, cond, uncond = models
    out = benchmark(sample, student, z, karras_steps(steps), cond, uncond, omega=5.0, nu=nu)
    assert out.shape == z.shape


def test_teacher_heun40(benchmark, models):
    teacher, _, z, cond, uncond = models
    out = benchmark.pedantic(heun_sample, args=(teacher, z, karras_sigmas(40), cond, uncond), kwargs=dict(omega=5.0),
                             rounds=3, iterations=1)
    assert out.shape == z.shape
