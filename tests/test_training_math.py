"""Every term of the teacher and distillation losses, checked against an exact, independent expectation.

Expected values come from closed forms (the Gaussian data distribution of `tests/gaussian.py`, EDM's
scalings written out by hand) or from hand-computable cases, never from the code's own output. The
last group checks that the training tasks (`train/teacher.py`, `train/distill.py`) call these terms
with the drawn quantities. `tests/test_mutations.py` shows each test can fail.

Exact DSM expectations use "Hadamard" examples: z0 = sigma * a and noise = b with a, b in {+-1}^4,
mean(a b) = 0, so for a linear denoiser D(z, t) = alpha z the per-example mean squared error is
exactly (1 - alpha)^2 sigma^2 + alpha^2 t^2 (no Monte-Carlo error).
"""

import math

import numpy as np
import pytest
import torch
from gaussian import CondGaussianTeacher, GaussianTeacher
from torch import nn

import soundctm.ctm as ctm_mod
import soundctm.train.distill as distill_mod
from soundctm.ctm import (
    CTMLoss,
    TimeDraw,
    adaptive_dsm_weight,
    apply_dropout,
    d_teacher,
    draw_distill,
    draw_dsm_sigma,
    ema_update,
    feature_distance,
    make_ema,
    student_dsm_loss,
)
from soundctm.edm import EDMScalings, Precond, edm_dsm_loss, heun_solve, karras_sigmas
from soundctm.rng import example_generators
from soundctm.train.loop import TrainConfig, allreduce_mean, load_data, resolve_config
from soundctm.train.teacher import TeacherTask, teacher_draws

pytestmark = pytest.mark.fast

A = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64).reshape(1, 2, 2)
B = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64).reshape(1, 2, 2)
SIGMA_D = 0.5


def _hadamard(n: int, data_std: float):
    """z0 = data_std * a, noise = b for n examples (see the module docstring)."""
    return (data_std * A).expand(n, -1, -1).clone(), B.expand(n, -1, -1).clone()


class LinearNet(nn.Module):
    """F(x, c_noise, cond) = k x; records its inputs. Features: [x, 1] (block 1 ignores the input)."""

    def __init__(self, k: float = 0.0):
        super().__init__()
        self.k = k
        self.calls = []

    def forward(self, x, c_noise, cond, extra_emb=None, *, return_features=False):
        self.calls.append((x.detach().clone(), c_noise.detach().clone(), cond.detach().clone()))
        out = self.k * x
        if return_features:
            return out, [x, torch.ones_like(x), torch.ones_like(x)]
        return out


# ----------------------------------------------------------------------------------------------
# Teacher DSM (EDM, Appendix C): lambda(t) || z0 - D(z0 + t eps, t) ||^2


def test_teacher_dsm_of_the_optimal_denoiser_is_one_at_every_sigma():
    """Data N(0, sigma_d^2): the optimal denoiser is c_skip(t) z (F = 0), its error is the posterior
    variance sigma_d^2 t^2 / (sigma_d^2 + t^2), and lambda(t) = (t^2 + sigma_d^2) / (t sigma_d)^2 makes
    the weighted loss exactly 1 at every t (EDM's unit loss weighting)."""
    sig = torch.tensor([0.01, 0.3, 1.0, 7.0, 80.0], dtype=torch.float64)
    z0, noise = _hadamard(len(sig), SIGMA_D)
    loss = edm_dsm_loss(Precond(LinearNet(0.0), SIGMA_D), z0, torch.zeros(len(sig), 1, 1), sigma=sig, noise=noise)
    assert loss.shape == (len(sig),)
    torch.testing.assert_close(loss, torch.ones_like(sig), rtol=1e-9, atol=0)


@pytest.mark.parametrize("k, data_std", [(0.3, 0.8), (-0.7, 0.2), (1.5, 0.5)])
def test_teacher_dsm_of_a_linear_denoiser(k, data_std):
    """F(x) = k x gives D = alpha z, alpha = (sigma_d^2 + k t sigma_d) / (t^2 + sigma_d^2) (EDM's c_skip,
    c_out, c_in written out); expected loss lambda(t) ((1 - alpha)^2 std^2 + alpha^2 t^2)."""
    sig = torch.tensor([0.05, 0.5, 2.0, 20.0], dtype=torch.float64)
    z0, noise = _hadamard(len(sig), data_std)
    net = LinearNet(k)
    loss = edm_dsm_loss(Precond(net, SIGMA_D), z0, torch.zeros(len(sig), 1, 1), sigma=sig, noise=noise)
    sd2 = SIGMA_D ** 2
    expected = []
    for t in sig.tolist():
        alpha = (sd2 + k * t * SIGMA_D) / (t * t + sd2)
        lam = (t * t + sd2) / (t * SIGMA_D) ** 2
        expected.append(lam * ((1 - alpha) ** 2 * data_std ** 2 + alpha ** 2 * t * t))
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-9, atol=0)
    # the network saw c_noise = ln(t) / 4 at the drawn sigma of each example
    torch.testing.assert_close(net.calls[0][1], torch.log(sig) / 4)


def test_teacher_sigma_draws_are_lognormal():
    """ln sigma ~ N(-1.2, 1.2^2) (EDM): Kolmogorov-Smirnov distance of 4000 (seed, step, index) draws."""
    from scipy.stats import norm

    logs = []
    for step in range(50):
        _, sigma, _ = teacher_draws(example_generators(0, step, range(80), "teacher"), (1, 1), 0.1)
        logs.append(torch.log(sigma))
    x = np.sort(torch.cat(logs).double().numpy())
    cdf = norm.cdf(x, loc=-1.2, scale=1.2)
    n = len(x)
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks < 1.63 / math.sqrt(n), ks  # 1% level


# ----------------------------------------------------------------------------------------------
# d_teacher (Eq. 5): channel-normalised per-block features, every block


def test_feature_distance_hand_values():
    """Two stacks that differ only in the FIRST block: TN(a) at each time step is a / ||a|| over channels;
    time 0: (3,4)/5 vs (4,3)/5 -> 0.08, time 1: (1,0) vs (0,1) -> 2; mean over time 1.04."""
    a = torch.tensor([[[3.0, 1.0], [4.0, 0.0]]])  # [B=1, C=2, T=2]
    b = torch.tensor([[[4.0, 0.0], [3.0, 1.0]]])
    same1, same2 = torch.randn(1, 5, 2), torch.randn(1, 3, 2)
    d = feature_distance([a, same1, same2], [b, same1, same2])
    torch.testing.assert_close(d, torch.tensor([1.04]))
    # every block counts: differing in blocks 1 and 3 adds up
    # TN(c) = (0,1), (1,0) vs TN(a) = (.6,.8), (1,0): 0.36 + 0.04 = 0.4 at time 0, 0 at time 1: mean 0.2
    c = torch.tensor([[[0.0, 2.0], [5.0, 0.0]]])
    d2 = feature_distance([a, same1, a], [b, same1, c])
    torch.testing.assert_close(d2, torch.tensor([1.04 + 0.2]))
    # LPIPS normalisation: invariant to a positive scale of each time step's channel vector
    scale = torch.tensor([[[2.0, 0.1]]])
    torch.testing.assert_close(feature_distance([a, same1], [a * scale, same1 * 7.0]), torch.zeros(1), atol=1e-7,
                               rtol=0)


def test_d_teacher_uses_the_teachers_blocks_at_time_s():
    """A teacher whose first block is its (scaled) input and whose later blocks ignore it: two estimates
    that differ only in block 1 are at the hand-computed distance, evaluated at the jump's time s."""
    net = LinearNet(0.0)
    teacher = Precond(net, SIGMA_D)
    z_target = torch.tensor([[[3.0, 1.0], [4.0, 0.0]]]).repeat(2, 1, 1)
    z_est = torch.tensor([[[4.0, 0.0], [3.0, 1.0]]]).repeat(2, 1, 1).requires_grad_(True)
    s = torch.tensor([0.3, 5.0])
    d = d_teacher(teacher, z_target, z_est, torch.zeros(2, 1, 1), s)
    torch.testing.assert_close(d, torch.tensor([1.04, 1.04]))
    assert len(net.calls) == 2
    for _, c_noise, _ in net.calls:
        torch.testing.assert_close(c_noise, torch.log(s) / 4)
    # the estimate keeps its graph (gradients flow to the student), the target does not
    assert d.requires_grad
    d.sum().backward()
    assert z_est.grad is not None and float(z_est.grad.abs().sum()) > 0


# ----------------------------------------------------------------------------------------------
# Student DSM (Eq. 8): || z0 - g(z0 + sigma eps, sigma, sigma) ||^2 at the drawn sigma


class RecordingStudent(nn.Module):
    """g(z, t, s) = sigma_d^2 / (sigma_d^2 + t s) z: at s = t the optimal denoiser of N(0, sigma_d^2)."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.scalings = EDMScalings(SIGMA_D)  # as a CTMStudent has (Eq. 8 must not use its lambda)

    def g(self, z, t, s, cond, omega):
        self.calls.append((t.clone(), s.clone(), omega.clone()))
        ts = (t * s).reshape(-1, 1, 1)
        return SIGMA_D ** 2 / (SIGMA_D ** 2 + ts) * z


def test_student_dsm_at_the_drawn_sigma():
    """Unweighted (Eq. 8) posterior variance sigma_d^2 t^2 / (sigma_d^2 + t^2) at t = s = the drawn sigma."""
    sig = torch.tensor([0.02, 0.4, 3.0, 60.0], dtype=torch.float64)
    z0, noise = _hadamard(len(sig), SIGMA_D)
    st = RecordingStudent()
    omega = torch.tensor([2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    loss = student_dsm_loss(st, z0, torch.zeros(4, 1, 1), omega, sig, noise)
    sd2 = SIGMA_D ** 2
    torch.testing.assert_close(loss, sd2 * sig ** 2 / (sd2 + sig ** 2), rtol=1e-9, atol=0)
    (t, s, w), = st.calls
    assert torch.equal(t, sig) and torch.equal(s, sig) and torch.equal(w, omega)


def test_student_dsm_sigma_mixture():
    """Appendix C: 50% lognormal(-1.2, 1.2), 50% Karras(xi), xi ~ U[0, 0.7]; KS test of the mixture CDF."""
    from scipy.stats import norm

    x = np.sort(draw_dsm_sigma(20000, torch.Generator().manual_seed(0)).double().numpy())
    rho, smin, smax = 7.0, 0.002, 80.0
    xi = (smax ** (1 / rho) - x ** (1 / rho)) / (smax ** (1 / rho) - smin ** (1 / rho))
    cdf = 0.5 * norm.cdf((np.log(x) + 1.2) / 1.2) + 0.5 * np.clip(1 - xi / 0.7, 0, 1)
    n = len(x)
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks < 1.63 / math.sqrt(n), ks


# ----------------------------------------------------------------------------------------------
# EMA: sg(theta) <- mu sg(theta) + (1 - mu) theta


def test_ema_update_hand_values():
    model, ema = nn.Linear(2, 1), nn.Linear(2, 1)
    model.register_buffer("count", torch.tensor(5.0))
    ema.register_buffer("count", torch.tensor(0.0))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3.0)
        for p in ema.parameters():
            p.fill_(1.0)
    ema_update(ema, model, 0.9)
    for p in ema.parameters():  # 0.9 * 1 + 0.1 * 3
        torch.testing.assert_close(p, torch.full_like(p, 1.2))
    assert float(ema.count) == 5.0  # buffers are copied
    for p in model.parameters():
        assert torch.all(p == 3.0)
    frozen = make_ema(model)
    assert not any(p.requires_grad for p in frozen.parameters()) and not frozen.training


def test_training_tasks_use_their_ema_rates():
    """Teacher: mu_k = min(0.999, (1 + k) / (10 + k)) (warm-up); student: the preset's mu (0.96, tiny-dit)."""
    cases = [("teacher", 0, 0.1), ("teacher", 10, 11 / 20), ("teacher", 100000, 0.999), ("distill", 0, 0.96)]
    for kind, step, mu in cases:
        task = _task(kind)
        with torch.no_grad():
            for p in task.model.parameters():
                p.fill_(2.0)
            for p in task.ema.parameters():
                p.fill_(-1.0)
        task.update_ema(step)
        expected = mu * -1.0 + (1 - mu) * 2.0
        for p in task.ema.parameters():
            torch.testing.assert_close(p, torch.full_like(p, expected), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Adaptive lambda_DSM = ||grad_L L_CTM|| / ||grad_L L_DSM|| (Appendix C)


def _linear_losses(ga, gb):
    w = torch.zeros(2, requires_grad=True)
    return (torch.tensor(ga) * w).sum(), (torch.tensor(gb) * w).sum(), w


def test_adaptive_weight_hand_values_and_clamp():
    l1, l2, w = _linear_losses([3.0, 4.0], [0.6, 0.8])  # gradient norms 5 and 1
    torch.testing.assert_close(adaptive_dsm_weight(l1, l2, w), torch.tensor(5.0))
    l1, l2, w = _linear_losses([0.3, 0.4], [6.0, 8.0])
    torch.testing.assert_close(adaptive_dsm_weight(l1, l2, w), torch.tensor(0.05))
    l1, l2, w = _linear_losses([3e4, 4e4], [0.6, 0.8])  # 5e4, clamped
    assert float(adaptive_dsm_weight(l1, l2, w)) == 1e4
    assert float(adaptive_dsm_weight(l1, l2, w, max_weight=100.0)) == 100.0
    assert not adaptive_dsm_weight(l1, l2, w).requires_grad


def test_adaptive_weight_reduces_gradients_before_the_norms():
    """The hook sees the two last-layer gradients [g_CTM, g_DSM] and edits them in place (all-reduce)."""
    seen = []

    def hook(gs):
        seen.append([g.clone() for g in gs])
        gs[0].mul_(3.0)

    l1, l2, w = _linear_losses([3.0, 4.0], [0.6, 0.8])
    lam = adaptive_dsm_weight(l1, l2, w, reduce_grads=hook)
    torch.testing.assert_close(lam, torch.tensor(15.0))
    assert len(seen) == 1
    torch.testing.assert_close(seen[0][0], torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(seen[0][1], torch.tensor([0.6, 0.8]))


# ----------------------------------------------------------------------------------------------
# Caption dropout for CFG (Algorithm 2, line 4)


def test_apply_dropout_hand_case():
    cond = torch.arange(12.0).reshape(3, 2, 2) + 1
    unc = torch.full((1, 2, 2), -5.0)
    out = apply_dropout(cond, unc, torch.tensor([True, False, True]))
    assert torch.equal(out[0], unc[0]) and torch.equal(out[2], unc[0]) and torch.equal(out[1], cond[1])


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_dropout_fraction_and_determinism(p):
    """Over 4000 (seed, step, index) draws the dropped fraction is p (within 4 binomial s.d.), for the
    teacher's and the student's draws; the same (seed, step, index) always gives the same decision."""
    def student(seed, step, idx):
        return draw_distill(example_generators(seed, step, idx, "distill"), karras_sigmas(10), (1, 2),
                            omega_range=(2.0, 5.0), p_uncond=p, max_ode_steps=3).drop

    def teacher(seed, step, idx):
        return teacher_draws(example_generators(seed, step, idx, "teacher"), (1, 2), p)[0]

    for draw in (student, teacher):
        drops = torch.cat([draw(seed, step, range(100)) for seed in (0, 1) for step in range(20)])
        n = drops.numel()
        assert abs(float(drops.float().mean()) - p) < 4 * math.sqrt(p * (1 - p) / n), float(drops.float().mean())
        assert torch.equal(draw(3, 7, [5, 9, 2]), draw(3, 7, [5, 9, 2]))
        # a decision belongs to its example, not to its position in the batch
        assert torch.equal(draw(3, 7, range(40))[[5, 9, 2]], draw(3, 7, [5, 9, 2]))
        assert not torch.equal(draw(0, 0, range(200)), draw(1, 0, range(200)))
        assert not torch.equal(draw(0, 0, range(200)), draw(0, 1, range(200)))


# ----------------------------------------------------------------------------------------------
# The CTM target (Eqs. 4, 7): G_sg(Solver(z_t, t, u; phi, omega), u, s) with Heun and CFG



class ScaledFlow(nn.Module):
    """A student jump with one trainable scale: scale * (exact guided flow of `CondGaussianTeacher`)."""

    def __init__(self, std, mu_uncond, scale=1.0, offset=0.0):
        super().__init__()
        self.std, self.mu_uncond, self.offset = std, mu_uncond, offset
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float64))
        self.calls = []

    def forward(self, z, t, s, cond, omega):
        self.calls.append((t.clone(), s.clone(), cond.clone(), omega.clone()))
        mu = (omega * cond[:, 0, 0] + (1 - omega) * self.mu_uncond).reshape(-1, 1, 1)
        return self.scale * GaussianTeacher(0.0, self.std).jump(z - mu, t, s) + mu + self.offset


def _guided_heun(z, it, iu, grid, mu, std, heun=True):
    """Heun (or Euler) on grid[it] -> ... -> grid[iu] for the Gaussian denoiser of mean mu, written out."""
    x = z.clone()
    for j in range(it, iu):
        tc, tn = float(grid[j]), float(grid[j + 1])
        d1 = (x - (mu + std ** 2 / (std ** 2 + tc ** 2) * (x - mu))) / tc
        xe = x + (tn - tc) * d1
        if heun:
            d2 = (xe - (mu + std ** 2 / (std ** 2 + tn ** 2) * (xe - mu))) / tn
            x = x + (tn - tc) * 0.5 * (d1 + d2)
        else:
            x = xe
    return x


def test_ctm_target_is_ema_of_the_guided_heun_solve():
    std, mu_unc = 0.5, -0.4
    grid = karras_sigmas(8, dtype=torch.float64)  # a coarse grid: Heun and Euler differ clearly
    it, iu, is_ = torch.tensor([0, 1, 2, 3]), torch.tensor([3, 4, 6, 5]), torch.tensor([5, 4, 7, 6])
    draw = TimeDraw(it, iu, is_, grid[it], grid[iu], grid[is_])
    g = torch.Generator().manual_seed(0)
    cond = torch.tensor([0.8, -0.3, 1.5, 0.2], dtype=torch.float64).reshape(4, 1, 1)
    uncond = torch.full((1, 1, 1), mu_unc, dtype=torch.float64)
    omega = torch.tensor([1.0, 2.0, 3.5, 5.0], dtype=torch.float64)
    z_t = torch.randn(4, 2, 3, generator=g, dtype=torch.float64) * draw.t.reshape(-1, 1, 1)
    ema = ScaledFlow(std, mu_unc, scale=0.9)
    student = ScaledFlow(std, mu_unc, scale=1.3)
    loss = CTMLoss(CondGaussianTeacher(std), grid, distance="l2_s")
    target = loss.target(ema, z_t, draw, cond, uncond, omega)
    heun, euler = [], []
    for i in range(4):
        mu = float(omega[i] * cond[i, 0, 0] + (1 - omega[i]) * mu_unc)
        for out, h in ((heun, True), (euler, False)):
            z_u = _guided_heun(z_t[i:i + 1], int(it[i]), int(iu[i]), grid, mu, std, heun=h)
            jump = GaussianTeacher(0.0, std).jump(z_u - mu, draw.u[i:i + 1], draw.s[i:i + 1])
            out.append(0.9 * jump + mu)
    heun, euler = torch.cat(heun), torch.cat(euler)
    torch.testing.assert_close(target, heun, rtol=1e-10, atol=1e-10)
    assert float((heun - euler).abs().max()) > 1e-3 * float(heun.abs().max())  # Euler would be caught
    # the EMA (not the online student) made the jump u -> s, with the conditional embedding and omega
    (t_, s_, c_, w_), = ema.calls
    assert torch.equal(t_, draw.u) and torch.equal(s_, draw.s) and torch.equal(c_, cond) and torch.equal(w_, omega)
    assert not student.calls
    # stop-gradient: no graph to the EMA's parameters; the loss's gradient reaches the student only
    assert not target.requires_grad
    val = loss(student, ema, z_t, draw, cond, uncond, omega)
    mu = (omega * cond[:, 0, 0] + (1 - omega) * mu_unc).reshape(-1, 1, 1)
    est = 1.3 * GaussianTeacher(0.0, std).jump(z_t - mu, draw.t, draw.s) + mu
    torch.testing.assert_close(val.detach(), (est - heun).pow(2).flatten(1).mean(1), rtol=1e-9, atol=1e-12)
    val.sum().backward()
    assert ema.scale.grad is None
    assert student.scale.grad is not None and float(student.scale.grad.abs()) > 0


def test_ctm_loss_d_teacher_compares_the_teachers_features_at_time_s():
    """Eq. (7): d_teacher(z_target, z_est, c, s). With a teacher whose first block is its scaled input
    c_in(s) z and whose later blocks are constant, the loss is the mean over time of the squared distance
    of the channel-normalised target and estimate, evaluated at s (hand formula in numpy)."""
    std, mu_unc = 0.5, -0.4
    net = LinearNet(0.0)
    teacher = Precond(net, SIGMA_D)
    grid = karras_sigmas(8, dtype=torch.float64)
    it, iu, is_ = torch.tensor([0, 2]), torch.tensor([3, 5]), torch.tensor([5, 7])
    draw = TimeDraw(it, iu, is_, grid[it], grid[iu], grid[is_])
    cond = torch.tensor([0.8, -0.3], dtype=torch.float64).reshape(2, 1, 1)
    uncond = torch.full((1, 1, 1), mu_unc, dtype=torch.float64)
    omega = torch.tensor([2.0, 4.0], dtype=torch.float64)
    z_t = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 5
    offset = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ema, student = ScaledFlow(std, mu_unc, 0.9), ScaledFlow(std, mu_unc, 1.3, offset=offset)
    loss = CTMLoss(teacher, grid, distance="d_teacher")
    target = loss.target(ema, z_t, draw, cond, uncond, omega)
    net.calls.clear()
    val = loss(student, ema, z_t, draw, cond, uncond, omega)
    est = student(z_t, draw.t, draw.s, cond, omega).detach().numpy()
    tgt = target.numpy()
    unit = lambda f: f / np.linalg.norm(f, axis=1, keepdims=True)  # noqa: E731
    expected = ((unit(tgt) - unit(est)) ** 2).sum(1).mean(1)
    assert expected.min() > 0.05
    np.testing.assert_allclose(val.detach().numpy(), expected, rtol=1e-9)
    feature_calls = net.calls[-2:]  # target's and estimate's feature passes (after the teacher solve)
    for _, c_noise, _ in feature_calls:
        torch.testing.assert_close(c_noise, torch.log(draw.s) / 4)


# ----------------------------------------------------------------------------------------------
# The training tasks call these terms with the step's draws


def _task(kind, **kw):
    base = dict(kind=kind, data="synthetic", batch_size=8, synthetic_clips=8)
    if kind == "distill":
        base.update(max_ode_steps=2)
    cfg = resolve_config(TrainConfig(**{**base, **kw}))
    data = load_data(cfg, log=lambda *a: None)
    if kind == "teacher":
        return TeacherTask(cfg, data, torch.device("cpu"))
    return distill_mod.DistillTask(cfg, data, torch.device("cpu"), log=lambda *a: None)


def _dropped_rows(cond_seen, uncond):
    return (cond_seen == uncond).flatten(1).all(1)


def test_teacher_task_applies_dropout_and_weighted_dsm():
    task = _task("teacher", p_uncond=0.5)
    seen = []
    h = task.model.net.register_forward_pre_hook(lambda m, a: seen.append((a[1].clone(), a[2].clone())))
    step = 3
    from soundctm.train.data import worker_indices

    idx = worker_indices(step, 8, 0, 1)
    drop, sigma, _ = teacher_draws(example_generators(task.cfg.seed, step, idx, "teacher"),
                                   task.preset.latent_shape, 0.5)
    assert 0 < int(drop.sum()) < 8
    task.losses(step, 0, 1)
    h.remove()
    (c_noise, cond), = seen
    assert torch.equal(_dropped_rows(cond, task.uncond), drop)
    torch.testing.assert_close(c_noise, torch.log(sigma) / 4)


def test_distill_task_wiring(monkeypatch):
    """One DistillTask step goes through `ctm.distill_losses` (the one code path): caption dropout, the
    drawn omega, z_t = z0 + t eps, the CTM term with the Heun teacher solve, the DSM term at the drawn DSM
    sigma, and ONE adaptive weight with the all-reduce."""
    task = _task("distill", p_uncond=0.5)
    step = 2
    from soundctm.train.data import pairs_for, worker_indices

    idx = worker_indices(step, 8, 0, 1)
    d = task.draws(step, idx)
    assert 0 < int(d.drop.sum()) < 8
    z0, cond = task.data.batch(pairs_for(task.cfg.seed, idx, task.data.n_pairs))
    assert task.ctm.solver is heun_solve
    torch.testing.assert_close(task.ctm.sigmas, karras_sigmas(task.cfg.n_grid))
    rec = {}
    ctm = task.ctm

    def ctm_spy(student, ema, z_t, times, cond_used, uncond, omega):
        rec["ctm"] = (student, ema, z_t, times, cond_used, uncond, omega)
        return ctm(student, ema, z_t, times, cond_used, uncond, omega)

    orig_dsm = student_dsm_loss

    def dsm_call(*a):
        rec["dsm"] = a
        return orig_dsm(*a)

    def lam_spy(l1, l2, last, *a, **kw):
        out = adaptive_dsm_weight(l1, l2, last, *a, **kw)
        rec["lam"] = (last, kw.get("reduce_grads"), out)
        return out

    task.ctm = ctm_spy
    monkeypatch.setattr(ctm_mod, "student_dsm_loss", dsm_call)  # the globals `ctm.distill_losses` calls
    monkeypatch.setattr(ctm_mod, "adaptive_dsm_weight", lam_spy)
    out = task.losses(step, 0, 1)
    student, ema, z_t, times, cond_used, uncond, omega = rec["ctm"]
    assert student is task.model and ema is task.ema
    assert torch.equal(_dropped_rows(cond_used, task.uncond), d.drop)
    assert torch.equal(cond_used[~d.drop], cond[~d.drop])
    assert torch.equal(omega, d.omega) and torch.equal(times.t, d.times.t) and torch.equal(times.s, d.times.s)
    torch.testing.assert_close(z_t, z0 + d.times.t.reshape(-1, 1, 1) * d.noise)
    s_student, s_z0, s_cond, s_omega, s_sigma, s_noise, s_weighting = rec["dsm"]
    assert s_weighting == task.cfg.dsm_weighting == "none"
    assert s_student is task.model and torch.equal(s_z0, z0) and torch.equal(s_cond, cond_used)
    assert torch.equal(s_omega, d.omega) and torch.equal(s_sigma, d.dsm_sigma) and torch.equal(s_noise, d.dsm_noise)
    last, reduce, lam = rec["lam"]
    assert last is task.model.last_layer() and reduce is allreduce_mean
    torch.testing.assert_close(out["lambda_dsm"], task.cfg.dsm_weight * lam)
    torch.testing.assert_close(out["loss"].detach(), out["ctm"] + out["lambda_dsm"] * out["dsm"])
    assert set(out) == set(task.log_keys)
