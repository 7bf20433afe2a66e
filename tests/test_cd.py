"""The consistency-distillation baselines (soundctm/cd.py, objectives "cd" and "lcm" of the one distillation loop,
the "cm" sampler) against closed forms and hand cases.

- boundary condition: f(z, sigma_min) = z bit for bit, through c_skip(sigma_min) = 1 and c_out(sigma_min) = 0;
- the CD target is the EMA's consistency function after exactly ONE Heun step of the CFG-guided teacher (CD) or
  exactly k steps through the grid points in between (LCD), against the exact Gaussian teacher written out by hand;
- the sampler re-noises each item from its own seed (same seeds -> same output, other seeds -> other noise, an
  item's output does not depend on the batch it is in), against a hand-written loop;
- the objective and its settings are in config.json and the run key; SoundCTM's run keys are unchanged.
"""

import json
import math

import numpy as np
import pytest
import torch
from conftest import randomize_
from gaussian import CondGaussianTeacher
from torch import nn

from soundctm.cd import (
    CD_OMEGA,
    LCM_HUBER_C,
    LCM_SKIP,
    CDDraws,
    CDLoss,
    CMScalings,
    ConsistencyJump,
    cd_losses,
    consistency_fn,
    draw_cd,
)
from soundctm.edm import SIGMA_MIN, karras_sigmas
from soundctm.experiments.catalog import AUDIO_LCM, CONSISTENCY_TTA, UNET_STUDENT
from soundctm.experiments.generation import sample_row
from soundctm.experiments.spec import Row
from soundctm.presets import build_student, build_teacher
from soundctm.rng import derive_seed, example_generators, prior_noise
from soundctm.sampling import cm_sample, karras_steps
from soundctm.train.checkpoint import load_export
from soundctm.train.config import TrainConfig, resolve_config
from soundctm.train.loop import run_training
from soundctm.train.tiny import run_key

SD = 0.5  # sigma_data of the fakes


class LinearNet(nn.Module):
    """F(x, c_noise, cond, extra) = k x (a trainable k); records (x, c_noise, extra) of every call."""

    def __init__(self, k: float):
        super().__init__()
        self.k = nn.Parameter(torch.tensor(float(k), dtype=torch.float64))
        self.calls = []

    def forward(self, x, c_noise, cond, extra_emb=None):
        self.calls.append((x.detach().clone(), c_noise.detach().clone(), extra_emb))
        return self.k * x


class FakeStudent(nn.Module):
    """What `consistency_fn` reads of a CTMStudent: net, omega_embed, sigma_data, sigma_min."""

    def __init__(self, k: float, sigma_min: float = SIGMA_MIN):
        super().__init__()
        self.net = LinearNet(k)
        self.sigma_data, self.sigma_min = SD, sigma_min
        self.omegas = []

    def omega_embed(self, omega):
        self.omegas.append(omega.clone())
        return torch.zeros(omega.shape[0], 1, dtype=omega.dtype)


def f_linear(k: float, z: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """f(z, sigma) of `LinearNet(k)` with Song et al.'s scalings written out: (c_skip + c_out k c_in) z."""
    s = sigma.reshape(-1, 1, 1)
    c_skip = SD**2 / ((s - SIGMA_MIN) ** 2 + SD**2)
    c_out = SD * (s - SIGMA_MIN) / np.sqrt(SD**2 + s**2)
    c_in = 1 / np.sqrt(s**2 + SD**2)
    return (c_skip + c_out * k * c_in) * z



def heun_by_hand(z: np.ndarray, path: list[float], mu: float, std: float) -> np.ndarray:
    """Heun's method on the PF ODE dz/dt = (z - D(z, t)) / t of the Gaussian denoiser of mean mu, along `path`."""
    x = z.copy()
    den = lambda x, t: mu + std**2 / (std**2 + t**2) * (x - mu)  # noqa: E731
    for tc, tn in zip(path[:-1], path[1:]):
        d1 = (x - den(x, tc)) / tc
        xe = x + (tn - tc) * d1
        d2 = (xe - den(xe, tn)) / tn
        x = x + (tn - tc) * 0.5 * (d1 + d2)
    return x


# ----------------------------------------------------------------------------------------------
# the consistency function and its boundary condition


def test_cm_scalings_hand_values_and_boundary():
    sc = CMScalings(SD, SIGMA_MIN)
    s_min = torch.tensor([SIGMA_MIN], dtype=torch.float32)
    assert float(sc.c_skip(s_min)) == 1.0 and float(sc.c_out(s_min)) == 0.0
    one = torch.tensor([1.0], dtype=torch.float64)
    torch.testing.assert_close(sc.c_skip(one), torch.tensor([0.25 / (0.998**2 + 0.25)], dtype=torch.float64))
    torch.testing.assert_close(sc.c_out(one), torch.tensor([0.5 * 0.998 / math.sqrt(1.25)], dtype=torch.float64))
    torch.testing.assert_close(sc.c_in(one), torch.tensor([1 / math.sqrt(1.25)], dtype=torch.float64))


def test_boundary_condition_holds_exactly_for_a_random_network(one_thread):
    """f(z, sigma_min) = z bit for bit for a randomised tiny UNet student (no output is zero by construction),
    at sigma_min itself and at the last level of the sampling grid; above sigma_min the network counts."""
    student = randomize_(build_student("tiny-unet"), seed=3).eval()
    c, t = student.latent_shape
    z = torch.randn(3, c, t, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(3, *student.cond_shape, generator=torch.Generator().manual_seed(1))
    omega = torch.tensor([2.0, 3.5, 5.0])
    with torch.no_grad():
        for s_min in (torch.full((3,), SIGMA_MIN), karras_steps(4)[-1].expand(3)):
            assert torch.equal(consistency_fn(student, z, s_min, cond, omega), z)
        above = consistency_fn(student, z, torch.full((3,), 0.05), cond, omega)
    assert float((above - z).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="sigma_min"):
        consistency_fn(student, z, torch.full((3,), 1e-3), cond, omega)


def test_consistency_function_closed_form_and_its_inputs():
    """F = k x: f = (c_skip + c_out k c_in) z; the network sees c_in(sigma) z, c_noise = ln(sigma) / 4 and the
    omega embedding (no s)."""
    st = FakeStudent(0.7)
    sig = np.array([0.01, 0.5, 3.0, 80.0])
    z = np.random.default_rng(0).normal(size=(4, 2, 3))
    out = consistency_fn(st, torch.from_numpy(z), torch.from_numpy(sig), torch.zeros(4, 1, 1, dtype=torch.float64),
                         torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
    np.testing.assert_allclose(out.detach().numpy(), f_linear(0.7, z, sig), rtol=1e-12)
    (x, c_noise, extra), = st.net.calls
    np.testing.assert_allclose(c_noise.numpy(), np.log(sig) / 4, rtol=1e-12)
    np.testing.assert_allclose(x.numpy(), z / np.sqrt(sig**2 + SD**2).reshape(-1, 1, 1), rtol=1e-12)
    torch.testing.assert_close(st.omegas[0], torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))


# ----------------------------------------------------------------------------------------------
# the target: EMA after exactly one (CD) / k (LCD) teacher steps


def _case(skip: int, n: int = 4):
    grid = karras_sigmas(10, dtype=torch.float64)  # coarse: one Heun step and two differ clearly
    it = torch.tensor([0, 2, 5, 9 - skip])[:n]
    iu = it + skip
    g = torch.Generator().manual_seed(skip)
    omega = torch.tensor([1.0, 2.0, 3.5, 5.0], dtype=torch.float64)[:n]
    noise = torch.randn(n, 2, 3, generator=g, dtype=torch.float64)
    d = CDDraws(it, iu, grid[it], grid[iu], omega, torch.zeros(n, dtype=torch.bool), noise)
    cond = torch.tensor([0.8, -0.3, 1.5, 0.2], dtype=torch.float64)[:n].reshape(n, 1, 1)
    uncond = torch.full((1, 1, 1), -0.4, dtype=torch.float64)
    z_t = (0.5 * torch.randn(n, 2, 3, generator=g, dtype=torch.float64) + d.t.reshape(-1, 1, 1) * noise)
    return grid, d, cond, uncond, z_t


@pytest.mark.parametrize("objective, skip", [("cd", 1), ("lcm", 3)])
def test_target_is_the_ema_after_exactly_k_teacher_steps(objective, skip):
    std, mu_unc = 0.5, -0.4
    grid, d, cond, uncond, z_t = _case(skip)
    student, ema = FakeStudent(1.3), FakeStudent(0.6)
    loss = CDLoss(CondGaussianTeacher(std), grid, objective)
    target = loss.target(ema, z_t, d, cond, uncond, d.omega)
    exact, fewer, more = [], [], []
    for i in range(len(d.t)):
        mu = float(d.omega[i] * cond[i, 0, 0] + (1 - d.omega[i]) * mu_unc)  # CFG of two Gaussians: mean mu_omega
        path = [float(grid[j]) for j in range(int(d.it[i]), int(d.iu[i]) + 1)]
        zi = z_t[i:i + 1].numpy()
        exact.append(f_linear(0.6, heun_by_hand(zi, path, mu, std), np.array([path[-1]])))
        fewer.append(f_linear(0.6, heun_by_hand(zi, [path[0], path[-1]], mu, std), np.array([path[-1]])))
        nxt = min(int(d.iu[i]) + 1, len(grid) - 1)
        more.append(f_linear(0.6, heun_by_hand(zi, path + [float(grid[nxt])], mu, std), np.array([float(grid[nxt])])))
    exact = np.concatenate(exact)
    np.testing.assert_allclose(target.numpy(), exact, rtol=1e-10, atol=1e-12)
    # one step more would be caught; for LCD, one big Heun step over the skip (no intermediate points) too
    assert np.abs(np.concatenate(more) - exact).max() > 1e-3 * np.abs(exact).max()
    if skip > 1:
        assert np.abs(np.concatenate(fewer) - exact).max() > 1e-3 * np.abs(exact).max()
    # the EMA (not the online student) evaluated the target at u, with the drawn omega; no graph to it
    assert not student.net.calls
    (_, c_noise, _), = ema.net.calls
    torch.testing.assert_close(c_noise, torch.log(d.u) / 4)
    torch.testing.assert_close(ema.omegas[0], d.omega)
    assert not target.requires_grad
    # the loss: l2 (cd) / elementwise pseudo-Huber c = 0.001 (lcm) of f_theta(z_t, t) against the target
    val = loss(student, ema, z_t, d, cond, uncond, d.omega)
    est = f_linear(1.3, z_t.numpy(), d.t.numpy())
    diff = est - exact
    expected = (diff**2).mean((1, 2)) if objective == "cd" else (np.sqrt(diff**2 + LCM_HUBER_C**2)
                                                                  - LCM_HUBER_C).mean((1, 2))
    np.testing.assert_allclose(val.detach().numpy(), expected, rtol=1e-9)
    val.sum().backward()
    assert ema.net.k.grad is None
    assert student.net.k.grad is not None and float(student.net.k.grad.abs()) > 0


def test_cd_losses_dropout_and_z_t():
    """One batch: captions dropped where drawn, z_t = z0 + t eps, the mean of the CD term."""
    grid, d, cond, uncond, _ = _case(1)
    d = CDDraws(d.it, d.iu, d.t, d.u, d.omega, torch.tensor([True, False, True, False]), d.noise)
    z0 = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    seen = {}

    class Spy(CDLoss):
        def __call__(self, student, ema, z_t, dd, cond_used, unc, omega):
            seen.update(z_t=z_t, cond=cond_used)
            return super().__call__(student, ema, z_t, dd, cond_used, unc, omega)

    out = cd_losses(FakeStudent(1.1), FakeStudent(0.9), Spy(CondGaussianTeacher(), grid, "cd"), z0, cond, uncond, d)
    torch.testing.assert_close(seen["z_t"], z0 + d.t.reshape(-1, 1, 1) * d.noise)
    assert torch.equal(seen["cond"][[0, 2]], uncond.expand(2, 1, 1)) and torch.equal(seen["cond"][[1, 3]],
                                                                                     cond[[1, 3]])
    assert set(out) == {"loss", "cd"} and out["loss"].requires_grad and not out["cd"].requires_grad


def test_draw_cd_indices_omega_and_per_example_determinism():
    sig = karras_sigmas(12)
    for skip in (1, 4):
        d = draw_cd(example_generators(0, 3, range(2000), "cd"), sig, (1, 2), skip=skip, omega_range=(2.0, 5.0),
                    p_uncond=0.1)
        assert torch.equal(d.iu - d.it, torch.full_like(d.it, skip))
        assert int(d.it.min()) == 0 and int(d.it.max()) == 11 - skip  # every start index can be drawn
        counts = torch.bincount(d.it, minlength=12 - skip).double()
        assert float(counts.min()) > 0.6 * 2000 / (12 - skip)  # uniform over the 12 - k starts
        torch.testing.assert_close(d.t, sig[d.it]) and torch.testing.assert_close(d.u, sig[d.iu])
        assert 2.0 <= float(d.omega.min()) and float(d.omega.max()) <= 5.0
        assert abs(float(d.drop.float().mean()) - 0.1) < 4 * math.sqrt(0.09 / 2000)
    fixed = draw_cd(example_generators(0, 0, range(8), "cd"), sig, (1, 2), skip=1, omega_range=(4.0, 4.0),
                    p_uncond=0.0)
    assert torch.equal(fixed.omega, torch.full((8,), 4.0))
    few = draw_cd(example_generators(0, 7, [5, 9], "cd"), sig, (1, 2), skip=2, omega_range=(2.0, 5.0), p_uncond=0.3)
    many = draw_cd(example_generators(0, 7, range(10), "cd"), sig, (1, 2), skip=2, omega_range=(2.0, 5.0),
                   p_uncond=0.3)
    for a, b in zip((few.it, few.omega, few.drop, few.noise), (many.it, many.omega, many.drop, many.noise)):
        assert torch.equal(a, b[[5, 9]])
    with pytest.raises(ValueError, match="skip"):
        draw_cd(example_generators(0, 0, range(2), "cd"), sig, (1, 2), skip=12, omega_range=(2.0, 5.0), p_uncond=0.1)


# ----------------------------------------------------------------------------------------------
# the "cm" sampler: re-noising seeded per example


def renoise_by_hand(k: float, z_T: np.ndarray, grid: np.ndarray, seeds: list[int]) -> np.ndarray:
    """Song et al.'s Algorithm 1 for `LinearNet(k)`: x = f(z, tau_i); z = x + sqrt(tau_{i+1}^2 - sigma_min^2) eps_i,
    eps_i item j's i-th draw from its generator seeded with derive_seed(seed_j, "gamma-noise")."""
    gens = [torch.Generator().manual_seed(derive_seed(s, "gamma-noise")) for s in seeds]
    z = z_T.copy()
    n = len(grid) - 1
    for i in range(n):
        x = f_linear(k, z, np.full(len(z), grid[i]))
        if i < n - 1:
            eps = np.stack([torch.randn(z.shape[1:], generator=g).double().numpy() for g in gens])
            z = x + math.sqrt(grid[i + 1] ** 2 - SIGMA_MIN**2) * eps
    return x


def test_cm_sampler_renoises_each_item_from_its_seed():
    row = Row("cd-3", run=CONSISTENCY_TTA, sampler="cm", steps=3, omega=4.0)
    st = FakeStudent(0.4)
    z_T = prior_noise([10, 11, 12], (2, 3)).double()
    cond = torch.zeros(3, 1, 1, dtype=torch.float64)

    def run(z, seeds):
        return sample_row(row, st, z, cond[: len(z)], None, seeds=seeds)

    out = run(z_T, [10, 11, 12])
    grid = karras_steps(3).double().numpy()
    np.testing.assert_allclose(out.numpy(), renoise_by_hand(0.4, z_T.numpy(), grid, [10, 11, 12]), rtol=1e-5)
    assert torch.equal(run(z_T, [10, 11, 12]), out)  # same seeds, same samples
    other = run(z_T, [20, 21, 22])  # same z_T, other items' seeds: other noise
    assert float((other - out).abs().min()) > 0
    # an item's sample does not depend on the batch it is in
    torch.testing.assert_close(run(z_T[1:2], [11]), out[1:2], rtol=0, atol=0)
    # one step uses no noise at all
    one = Row("cd-1", run=CONSISTENCY_TTA, sampler="cm", steps=1, omega=4.0)
    assert torch.equal(sample_row(one, st, z_T, cond, None, seeds=[1, 2, 3]),
                       sample_row(one, st, z_T, cond, None, seeds=[7, 8, 9]))


def test_cm_sampler_batch_independence_and_nu_on_a_real_network(one_thread):
    student = randomize_(build_student("tiny-unet"), seed=4, scale=0.05).eval()
    c, t = student.latent_shape
    seeds = [3, 4, 5, 6]
    z_T = prior_noise(seeds, (c, t))
    cond = torch.randn(4, *student.cond_shape, generator=torch.Generator().manual_seed(2))
    uncond = torch.zeros(1, *student.cond_shape)
    row = Row("lcm-2", run=AUDIO_LCM, sampler="cm", steps=2, omega=5.0)
    full = sample_row(row, student, z_T, cond, uncond, seeds=seeds)
    part = sample_row(row, student, z_T[2:], cond[2:], uncond, seeds=seeds[2:])
    torch.testing.assert_close(part, full[2:], rtol=1e-5, atol=1e-5)
    # nu = 1 never evaluates the unconditional branch (uncond=None works); nu = 2 is Eq. (10) on f
    grid = karras_steps(1)
    f = ConsistencyJump(student)
    f_c = cm_sample(student, z_T, grid, cond, None, jump=f, omega=5.0)
    f_u = cm_sample(student, z_T, grid, uncond.expand(4, -1, -1), None, jump=f, omega=5.0)
    torch.testing.assert_close(cm_sample(student, z_T, grid, cond, uncond, jump=f, omega=5.0, nu=2.0),
                               f_u + 2 * (f_c - f_u),
                               rtol=1e-5, atol=1e-5)
    calls = []
    h = student.net.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    cm_sample(student, z_T, grid, cond, uncond, jump=f, omega=5.0, always_uncond=True)
    h.remove()
    assert calls == [8]  # the official samplers' cost: both branches in one batch


def test_rows_pair_cd_students_with_the_cm_sampler_only():
    with pytest.raises(ValueError, match="objective"):
        Row("x", run=CONSISTENCY_TTA, sampler="ctm", steps=1)
    with pytest.raises(ValueError, match="objective"):
        Row("x", run=UNET_STUDENT, sampler="cm", steps=1)
    Row("x", run=AUDIO_LCM, sampler="cm", steps=2, omega=5.0)


# ----------------------------------------------------------------------------------------------
# the objective in the training config, the run key and config.json


def test_objective_settings_and_run_keys():
    base = dict(kind="distill", preset="tiny-unet", data="synthetic", steps=7, batch_size=4)
    # SoundCTM's keys are those of the code before the objective existed (computed at commit e04c16d)
    assert run_key(TrainConfig(**base), {"teacher": "abc"}) == "3733abd7bc0c"
    assert run_key(TrainConfig(kind="teacher", preset="tiny-dit", data="synthetic", steps=7)) == "6e7b54841f69"
    cd = resolve_config(TrainConfig(**base, objective="cd"))
    lcm = resolve_config(TrainConfig(**base, objective="lcm"))
    assert (cd.skip_steps, cd.omega_range, cd.distance) == (1, (CD_OMEGA, CD_OMEGA), None)
    assert (lcm.skip_steps, lcm.omega_range, lcm.distance) == (LCM_SKIP, (2.0, 5.0), None)
    assert resolve_config(cd) == cd  # resolving twice changes nothing
    keys = {run_key(TrainConfig(**base, **kw), {"teacher": "abc"}) for kw in (
        {}, {"objective": "cd"}, {"objective": "lcm"}, {"objective": "lcm", "skip_steps": 2})}
    assert len(keys) == 4
    for bad, match in ((dict(objective="cd", distance="l2_s"), "SoundCTM"), (dict(objective="lcm", gan=True),
                       "SoundCTM"), (dict(objective="cd", grid_to_zero=True), "SoundCTM"),
                       (dict(skip_steps=2), "skip_steps"), (dict(objective="lcm", skip_steps=40), "skip_steps"),
                       (dict(objective="cd", huber_c=0.1), "huber_c"), (dict(objective="ddim"), "objective")):
        with pytest.raises(ValueError, match=match):
            resolve_config(TrainConfig(**{**base, **bad}))
    with pytest.raises(ValueError, match="distillation objective"):
        resolve_config(TrainConfig(kind="teacher", data="synthetic", objective="cd"))


def test_lcm_training_run_records_its_objective(tmp_path, one_thread):
    """Two steps of the one loop with objective "lcm": config.json and the export carry the objective and k,
    the log has the CD term, the EMA moved towards the online weights, and the export loads as a student."""
    cfg = TrainConfig(kind="distill", preset="tiny-unet", data="synthetic", objective="lcm", skip_steps=2, steps=2,
                      batch_size=2, synthetic_clips=2, checkpoint_every=2)
    summary = run_training(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    rec = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (rec["objective"], rec["skip_steps"], rec["distance"]) == ("lcm", 2, None)
    assert set(summary["last"]) == {"loss", "cd", "omega_mean", "ode_steps_mean"}
    assert summary["last"]["ode_steps_mean"] == 2.0 and math.isfinite(summary["last"]["cd"])
    student = load_export(tmp_path / "run" / "export.safetensors")
    assert student.export_metadata["train_config"]["objective"] == "lcm"
    fresh = build_student("tiny-unet", teacher=build_teacher("tiny-unet"))
    moved = sum(float((a - b).abs().sum()) for a, b in zip(student.state_dict().values(),
                                                          fresh.state_dict().values()))
    assert moved > 0
