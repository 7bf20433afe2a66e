"""The distillation fidelity measure (soundctm.fidelity) and the student's export EMA, against hand computations."""

import numpy as np
import pytest
import torch

from soundctm import fidelity as F
from soundctm.presets import build_student, build_teacher
from soundctm.sampling import heun_sample
from soundctm.train.config import TrainConfig, resolve_config
from soundctm.train.distill import power_ema_gamma
from soundctm.train.tiny import run_key


def test_relative_error_of_a_hand_computed_two_item_case():
    ref = torch.tensor([[[3.0, 4.0]], [[1.0, 0.0]]])  # ||ref||^2 = 25 and 1
    z = torch.tensor([[[3.0, 1.0]], [[0.0, 2.0]]])  # ||z - ref||^2 = 9 and 1 + 4 = 5
    err = F.relative_sq_error(z, ref)
    np.testing.assert_allclose(err, [9 / 25, 5.0])
    d = F.bootstrap_mean(err, n_boot=500)
    assert d["value"] == pytest.approx((9 / 25 + 5.0) / 2)
    # a resample of two items holds item 1 twice, item 2 twice, or one of each: its mean is one of three values
    assert d["lo"] >= 9 / 25 - 1e-12 and d["hi"] <= 5.0 + 1e-12 and d["n"] == 2
    with pytest.raises(ValueError, match="all zeros"):
        F.relative_sq_error(z, torch.zeros_like(ref))


def test_omega_response_is_the_relative_distance_between_the_extreme_omegas():
    a, b, c = torch.ones(1, 1, 4), 2 * torch.ones(1, 1, 4), 5 * torch.ones(1, 1, 4)
    # smallest omega 1 against largest 5: ||a - c||^2 / ||c||^2 = 16 / 25; the middle one is ignored
    np.testing.assert_allclose(F.omega_response({5.0: c, 1.0: a, 2.0: b}), [16 / 25])


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    teacher = build_teacher("tiny-dit", seed=0).eval()
    for p in teacher.parameters():  # a teacher whose output depends on its input, its time and its caption
        p.data.add_(0.05 * torch.randn_like(p))
    student = build_student("tiny-dit", seed=0, teacher=teacher).eval()
    c, d = teacher.cond_shape
    g = torch.Generator().manual_seed(1)
    cond, uncond = torch.randn(3, c, d, generator=g), torch.randn(1, c, d, generator=g)
    probe = F.build_probe(teacher, cond, uncond, seeds=(7, 8, 9), omegas=(2.0, 5.0))
    return teacher, student, probe


def test_the_teachers_own_heun_solve_has_zero_error(tiny_models):
    teacher, _, probe = tiny_models
    for w in probe.omegas:
        z = heun_sample(teacher, probe.z_T, torch.as_tensor(F.karras_sigmas(F.REFERENCE_GRID)), probe.cond,
                        probe.uncond, omega=w)
        np.testing.assert_array_equal(F.relative_sq_error(z, probe.references[w]), np.zeros(3))
    # and the references do depend on omega: the teacher's omega response is positive
    assert F.omega_response(probe.references).min() > 0
    # the teacher's one Euler step sigma_max -> 0 lands on its CFG denoiser at sigma_max
    e1 = F.teacher_euler1_errors(teacher, probe)
    for w, err in e1.items():
        with torch.no_grad():
            d_u = teacher(probe.z_T, 80.0, probe.uncond.expand_as(probe.cond))
            d_c = teacher(probe.z_T, 80.0, probe.cond)
        np.testing.assert_allclose(err, F.relative_sq_error(d_u + w * (d_c - d_u), probe.references[w]), rtol=1e-4)


def test_a_student_scores_its_samples_against_the_references(tiny_models):
    _, student, probe = tiny_models
    samples = F.student_samples(student, probe, steps=(1, 2))
    errs = F.fidelity_errors(samples, probe)
    for (w, n), z in samples.items():  # each entry is the hand formula on that sample
        ref = probe.references[w]
        want = ((z - ref) ** 2).flatten(1).sum(1) / (ref ** 2).flatten(1).sum(1)
        np.testing.assert_allclose(errs[(w, n)], want.double().numpy(), rtol=1e-6)
    s = F.summarize(student, probe, steps=(1, 2), n_boot=50)
    assert set(s["error"]) == {"w2", "w5"} and set(s["error"]["w5"]) == {"1", "2"}
    assert s["error"]["w5"]["1"]["value"] == pytest.approx(float(errs[(5.0, 1)].mean()))
    # a freshly initialised student's omega embedding is zero: it ignores omega exactly
    assert s["omega_response"]["1"]["value"] == 0.0
    assert s["teacher_omega_response"]["value"] > 0


@pytest.mark.parametrize("sigma_rel, gamma", [(0.05, 16.97), (0.10, 6.94)])
def test_power_ema_exponent_matches_edm2(sigma_rel, gamma):
    # Karras et al. 2024 (EDM2), Sec. 3.1: sigma_rel 0.05 <-> gamma 16.97, sigma_rel 0.10 <-> gamma 6.94
    assert power_ema_gamma(sigma_rel) == pytest.approx(gamma, abs=0.01)
    with pytest.raises(ValueError):
        power_ema_gamma(0.3)


def test_new_settings_keep_existing_run_keys_and_are_checked():
    base = TrainConfig(kind="distill", data="synthetic")
    # added at their defaults (and bookkeeping like fidelity_items), they leave a run's key as it was
    assert run_key(base) == run_key(TrainConfig(kind="distill", data="synthetic", lr_final_fraction=1.0,
                                                export_ema_std=None, fidelity_items=7))
    assert run_key(base) != run_key(TrainConfig(kind="distill", data="synthetic", export_ema_std=0.1))
    for bad in (dict(lr_final_fraction=0.0), dict(export_ema_std=0.5), dict(fidelity_items=-1)):
        with pytest.raises(ValueError):
            resolve_config(TrainConfig(kind="distill", data="synthetic", **bad))
    with pytest.raises(ValueError, match="distillation"):
        resolve_config(TrainConfig(kind="teacher", data="synthetic", export_ema_std=0.1))
