"""Property tests of the diffusion / CTM math (`pytest -m invariants`)."""

import pytest
import torch
from conftest import randomize_
from gaussian import ExactFlowStudent, GaussianTeacher
from hypothesis import given
from hypothesis import strategies as st

from soundctm.ctm import CTMLoss, TimeDraw, d_teacher, draw_tus, feature_distance
from soundctm.edm import EDMScalings, Precond, cfg_denoiser, heun_solve, karras_sigmas
from soundctm.nn.dit import DiT, DiTConfig
from soundctm.nn.unet import UNet1D, UNetConfig
from soundctm.presets import build_student, build_teacher
from soundctm.rng import prior_noise
from soundctm.sampling import karras_steps, sample

pytestmark = pytest.mark.invariants

TINY_DIT = DiTConfig(latent_channels=4, width=32, depth=2, heads=2, cond_dim=8, cross_kv_heads=1,
                     rotary_dim=8, time_feat_dim=16)
TINY_UNET = UNetConfig(latent_channels=4, channels=(16, 32), layers_per_block=1, attn_levels=(False, True),
                       head_dim=16, cond_dim=8, time_feat_dim=16, groups=4)


def _student(arch: str, seed: int = 0):
    from soundctm.ctm import CTMStudent

    torch.manual_seed(seed)
    net = DiT(TINY_DIT) if arch == "dit" else UNet1D(TINY_UNET)
    return randomize_(CTMStudent(net, sigma_data=0.5), seed)


sigma_st = st.floats(min_value=0.002, max_value=80.0, allow_nan=False)


@given(arch=st.sampled_from(["dit", "unet"]), b=st.integers(1, 3), tlen=st.sampled_from([4, 8, 12]),
       t=sigma_st, seed=st.integers(0, 1000))
def test_jump_to_same_time_is_identity(arch, b, tlen, t, seed):
    """G(z, t, t) = z exactly, for random backbones, shapes and t (Eq. 6)."""
    student = _student(arch, seed % 3)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, 4, tlen, generator=g) * t
    cond = torch.randn(b, 3, 8, generator=g)
    with torch.no_grad():
        out = student(z, torch.full((b,), t), torch.full((b,), t), cond, torch.full((b,), 3.0))
        # the backbone is live: a different s moves the output
        other = student(z, torch.full((b,), t), torch.full((b,), t * 0.5), cond, torch.full((b,), 3.0))
    assert torch.equal(out, z)
    assert not torch.allclose(other, z)


def test_scalings_limits_and_unit_variance():
    sc = EDMScalings(0.5)
    t = torch.tensor([1e-6, 1e-4, 1e-2])
    assert torch.all(sc.c_skip(t) > 0.999) and torch.allclose(sc.c_skip(t[:1]), torch.ones(1), atol=1e-9)
    assert torch.all(sc.c_out(t) < 0.011) and torch.all(sc.c_out(t)[:-1] <= sc.c_out(t)[1:])
    assert float(sc.c_out(torch.tensor(1e-8))) < 1e-7
    # c_in(t) z_t has unit variance when the data std equals sigma_data
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(200000, generator=g) * 0.5
    for tv in [0.01, 1.0, 30.0]:
        zt = z0 + tv * torch.randn(200000, generator=g)
        assert abs(float((sc.c_in(torch.tensor(tv)) * zt).std()) - 1.0) < 0.01
    assert torch.allclose(EDMScalings.c_noise(torch.tensor([1.0, torch.e ** 4])), torch.tensor([0.0, 1.0]))
    assert torch.isfinite(EDMScalings.safe_c_noise(torch.tensor([0.0]))).all()


def test_karras_grids():
    s = karras_sigmas(40)
    assert s.shape == (40,)
    assert torch.isclose(s[0], torch.tensor(80.0)) and torch.isclose(s[-1], torch.tensor(0.002))
    assert torch.all(s[1:] < s[:-1])
    g = karras_steps(4)
    assert g.shape == (5,) and torch.isclose(g[-1], torch.tensor(0.002))
    assert torch.allclose(karras_steps(1), torch.tensor([80.0, 0.002]))
    with pytest.raises(ValueError):
        karras_sigmas(0)


def test_student_init_equals_teacher_exactly():
    """At step 0 the student's g equals the teacher's denoiser D bit for bit (zero-init s/omega embeddings)."""
    for name in ["tiny-dit", "tiny-unet"]:
        teacher = randomize_(build_teacher(name), 1, scale=0.05)
        student = build_student(name, teacher=teacher)
        c, t = student.latent_shape
        l, d = student.cond_shape
        z = torch.randn(3, c, t) * 2
        cond = torch.randn(3, l, d)
        sig = torch.tensor([0.01, 1.0, 40.0])
        with torch.no_grad():
            dt = teacher(z, sig, cond)
            gs = student.g(z, sig, torch.tensor([0.002, 0.5, 20.0]), cond, torch.tensor([1.0, 3.0, 7.0]))
        assert torch.equal(dt, gs), name
        assert dt.abs().max() > 0
        # weights are trainable copies, not shared, even when the teacher is frozen
        frozen = build_student(name, teacher=teacher.requires_grad_(False))
        assert all(q.requires_grad for q in frozen.parameters())
        next(student.net.parameters()).data.add_(1.0)
        assert not torch.equal(next(student.net.parameters()), next(teacher.net.parameters()))


def _gaussian_setup(b=4, seed=0):
    teacher = GaussianTeacher(mu=0.7, sigma=0.3)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, 2, 5, generator=g) * 80.0 + 0.7
    return teacher, z


def test_heun_converges_to_exact_flow():
    teacher, z = _gaussian_setup()
    t, u = 80.0, 0.05
    exact = teacher.jump(z, torch.full((4,), t), torch.full((4,), u))
    errs = []
    for n in [5, 10, 20, 40, 80]:
        grid = karras_sigmas(n, sigma_min=u, sigma_max=t, dtype=torch.float64)
        out = heun_solve(lambda x, s: teacher(x, s), z.double(), t, u, sigmas=grid)
        errs.append(float((out - exact.double()).abs().max()))
    assert all(e2 < e1 for e1, e2 in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-3 * float(exact.abs().max())
    # 2nd order: halving the step cuts the error by about 4x
    assert errs[-2] / errs[-1] > 3.0, errs


def test_heun_final_step_to_zero_is_euler():
    """No 2nd-order correction at sigma 0: one step t -> 0 returns D(z, t) exactly."""
    teacher, z = _gaussian_setup()
    out = heun_solve(lambda x, s: teacher(x, s), z, 2.0, 0.0, sigmas=torch.tensor([2.0, 0.0]))
    assert torch.allclose(out, teacher(z, torch.full((4,), 2.0)), atol=1e-6)


def test_heun_per_example_times():
    """Examples with different (t, u) in one batch give the same result as alone."""
    teacher, z = _gaussian_setup()
    den = lambda x, s: teacher(x, s)
    grid = karras_sigmas(40)
    t = torch.stack([grid[0], grid[5], grid[10], grid[30]])
    u = torch.stack([grid[3], grid[6], grid[20], grid[39]])
    batch = heun_solve(den, z, t, u, sigmas=grid)
    for i in range(4):
        alone = heun_solve(den, z[i:i + 1], t[i:i + 1], u[i:i + 1], sigmas=grid)
        assert torch.allclose(batch[i:i + 1], alone, atol=1e-5, rtol=1e-5)


@given(seed=st.integers(0, 10_000))
def test_exact_flow_semigroup(seed):
    teacher, z = _gaussian_setup(seed=seed)
    g = torch.Generator().manual_seed(seed)
    ts = torch.sort(torch.rand(3, generator=g) * 79 + 0.002, descending=True).values
    t, u, s = [torch.full((4,), float(x)) for x in ts]
    two = teacher.jump(teacher.jump(z, t, u), u, s)
    one = teacher.jump(z, t, s)
    assert torch.allclose(two, one, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("distance", ["l2_s", "l2_0"])
def test_ctm_loss_zero_for_exact_flow(distance):
    """With the exact flow as student and EMA target, the CTM target equals the estimate: loss 0 with
    the exact solver, and only Heun's discretisation error with the N = 40 Heun solver."""
    teacher, z = _gaussian_setup()
    student = ExactFlowStudent(teacher)
    grid = karras_sigmas(40, dtype=torch.float64)
    exact_solver = lambda den, x, t, u, sigmas=None: teacher.jump(x, t, u)
    draw = draw_tus(grid, torch.Generator().manual_seed(0), 4)
    cond = torch.zeros(4, 1, 1)
    z = z.double()
    one = torch.ones(4, dtype=torch.float64)
    exact = CTMLoss(teacher, grid, distance=distance, solver=exact_solver)(student, student, z, draw, cond, cond, one)
    assert exact.shape == (4,)
    assert float(exact.max()) < 1e-20
    loss = CTMLoss(teacher, grid, distance=distance)
    vals = loss(student, student, z, draw, cond, cond, one)
    assert float(vals.max()) / float(z.pow(2).mean()) < 1e-6
    # and it is not zero for a wrong student (the loss can fail)
    wrong = GaussianTeacher(mu=0.0, sigma=1.0)
    bad = loss(ExactFlowStudent(wrong), student, z, draw, cond, cond, torch.ones(4, dtype=torch.float64))
    assert float(bad.max()) > 1e-3


def test_time_draw_ordering():
    grid = karras_sigmas(40)
    d = draw_tus(grid, torch.Generator().manual_seed(0), 2000)
    assert isinstance(d, TimeDraw)
    assert torch.all(d.it < d.iu) and torch.all(d.iu <= d.is_) and torch.all(d.is_ <= 39)
    k = (d.iu - d.it).float()
    assert k.min() >= 1 and k.max() <= 39
    # weighted prop. to k: large jumps are more frequent than small ones
    assert (k > 20).float().mean() > (k <= 20).float().mean()
    capped = draw_tus(grid, torch.Generator().manual_seed(0), 500, max_ode_steps=8)
    assert int((capped.iu - capped.it).max()) <= 8


def test_d_teacher_zero_and_symmetric():
    teacher = randomize_(build_teacher("tiny-dit"), 2, scale=0.05)
    c, t = teacher.latent_shape
    x, y = torch.randn(2, c, t), torch.randn(2, c, t)
    cond = torch.randn(2, *teacher.cond_shape)
    s = torch.tensor([0.5, 3.0])
    with torch.no_grad():
        assert torch.all(d_teacher(teacher, x, x, cond, s) == 0)
        dxy, dyx = d_teacher(teacher, x, y, cond, s), d_teacher(teacher, y, x, cond, s)
    assert torch.allclose(dxy, dyx) and torch.all(dxy > 0)
    # it uses every block of the teacher's own forward pass
    feats = teacher.features(x, s, cond)
    assert len(feats) == teacher.net.cfg.depth and feats[0].shape == (2, 64, t)
    assert torch.allclose(feature_distance(feats, feats), torch.zeros(2))


def test_gamma0_deterministic_and_batch_split_invariant():
    student = randomize_(build_student("tiny-dit"), 3, scale=0.05)
    c, t = student.latent_shape
    l, d = student.cond_shape
    z = prior_noise([11, 12, 13, 14], (c, t))
    cond = torch.randn(4, l, d, generator=torch.Generator().manual_seed(0))
    unc = torch.zeros(1, l, d)
    kw = dict(uncond=unc, omega=torch.tensor([3.0, 4.0, 5.0, 6.0]), nu=2.0, gamma=0.0)
    grid = karras_steps(3)
    a = sample(student, z, grid, cond, **kw)
    b = sample(student, z, grid, cond, **kw)
    assert torch.equal(a, b)
    # split into two batches of two: bit-identical
    halves = torch.cat([sample(student, z[i:i + 2], grid, cond[i:i + 2], **{**kw, "omega": kw["omega"][i:i + 2]})
                        for i in (0, 2)])
    assert torch.equal(a, halves)
    # batch of one: CPU BLAS picks another kernel for a single row, so equal to float32 rounding only
    ones = torch.cat([sample(student, z[i:i + 1], grid, cond[i:i + 1], **{**kw, "omega": kw["omega"][i:i + 1]})
                      for i in range(4)])
    assert torch.allclose(a, ones, atol=1e-5, rtol=1e-5)
    # each example's prior noise comes from its own seed
    assert torch.equal(prior_noise([13], (c, t)), z[2:3])


def test_nu1_is_conditional_only_and_never_calls_uncond():
    student = randomize_(build_student("tiny-dit"), 4, scale=0.05)
    c, t = student.latent_shape
    l, d = student.cond_shape
    z = prior_noise([1, 2], (c, t))
    cond = torch.randn(2, l, d)
    unc = torch.full((1, l, d), 123.0)
    seen = []
    h = student.net.register_forward_pre_hook(lambda m, args: seen.append(args[2].detach().clone()))
    out = sample(student, z, karras_steps(3), cond, unc, omega=4.0, nu=1.0)
    h.remove()
    assert len(seen) == 3 and all(x.shape[0] == 2 for x in seen)
    assert not any(bool((x == 123.0).all(dim=(1, 2)).any()) for x in seen)
    # equals the conditional-only student run by hand
    grid = karras_steps(3)
    ref = z
    with torch.no_grad():
        for i in range(3):
            ref = student(ref, grid[i], grid[i + 1], cond, torch.full((2,), 4.0))
    assert torch.equal(out, ref)
    # with nu != 1 the unconditional branch is used (in the same batched forward)
    seen.clear()
    h = student.net.register_forward_pre_hook(lambda m, args: seen.append(args[2].detach().clone()))
    sample(student, z, karras_steps(1), cond, unc, omega=4.0, nu=2.0)
    h.remove()
    assert len(seen) == 1 and seen[0].shape[0] == 4 and bool((seen[0][2:] == 123.0).all())


def test_gamma1_is_consistency_sampling():
    student = randomize_(build_student("tiny-unet"), 5, scale=0.05)
    c, t = student.latent_shape
    l, d = student.cond_shape
    z = prior_noise([7, 8], (c, t))
    cond = torch.randn(2, l, d)
    gens = lambda: [torch.Generator().manual_seed(100 + i) for i in range(2)]
    out = sample(student, z, karras_steps(3), cond, omega=3.0, gamma=1.0, generator=gens())
    grid = karras_steps(3)
    g2 = gens()
    ref = z
    with torch.no_grad():
        for i in range(3):
            ref = student(ref, grid[i], torch.zeros(2), cond, torch.full((2,), 3.0))  # G(z, t, 0)
            if i < 2:
                eps = torch.stack([torch.randn(c, t, generator=g) for g in g2])
                ref = ref + grid[i + 1] * eps
    assert torch.allclose(out, ref, atol=1e-6)
    # stochastic: another noise seed changes the sample
    other = sample(student, z, karras_steps(3), cond, omega=3.0, gamma=1.0,
                   generator=[torch.Generator().manual_seed(999 + i) for i in range(2)])
    assert not torch.allclose(out, other)


def test_cfg_single_batched_forward():
    teacher = randomize_(build_teacher("tiny-dit"), 6, scale=0.05)
    c, t = teacher.latent_shape
    z, cond, unc = torch.randn(2, c, t), torch.randn(2, *teacher.cond_shape), torch.zeros(1, *teacher.cond_shape)
    calls = []
    h = teacher.net.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    with torch.no_grad():
        out = cfg_denoiser(teacher, cond, unc, 3.0)(z, torch.full((2,), 1.5))
        dc = teacher(z, torch.full((2,), 1.5), cond)
        du = teacher(z, torch.full((2,), 1.5), unc.expand(2, -1, -1))
    h.remove()
    assert calls[0] == 4
    assert torch.allclose(out, 3.0 * dc - 2.0 * du, atol=1e-5)


def test_precond_rejects_zero_sigma():
    teacher = build_teacher("tiny-dit")
    c, t = teacher.latent_shape
    with pytest.raises(ValueError):
        teacher(torch.zeros(1, c, t), torch.zeros(1), torch.zeros(1, *teacher.cond_shape))
    assert isinstance(teacher, Precond)


# ---------------------------------------------------------------------------------------------- closed forms
# (issue 11, item 6): exact expected values, so a changed rho, a flipped nu or sigma_d in place of
# sigma_d^2 in c_skip / c_out fails


def test_karras_sigmas_match_the_rho7_closed_form():
    """sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, rho = 7."""
    from soundctm.edm import RHO, karras_from_xi

    assert RHO == 7.0
    lo, hi = 0.002 ** (1 / 7), 80.0 ** (1 / 7)
    for n in (2, 5, 40):
        expected = torch.tensor([(hi + i / (n - 1) * (lo - hi)) ** 7 for i in range(n)], dtype=torch.float64)
        torch.testing.assert_close(karras_sigmas(n, dtype=torch.float64), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(karras_steps(4).double(), torch.tensor([(hi + i / 4 * (lo - hi)) ** 7
                                                                       for i in range(5)], dtype=torch.float64),
                               rtol=1e-6, atol=0)
    # the midpoint of the 3-point grid, by hand: ((1.87036 + 0.41147) / 2)^7 = 1.14091^7 = 2.5152
    mid = float(karras_sigmas(3, dtype=torch.float64)[1])
    assert abs(mid - ((hi + lo) / 2) ** 7) < 1e-12 and 2.515 < mid < 2.516
    xi = torch.tensor([0.0, 0.3, 0.7], dtype=torch.float64)
    torch.testing.assert_close(karras_from_xi(xi), (hi + xi * (lo - hi)) ** 7, rtol=1e-12, atol=0)


class _ConstantJump(torch.nn.Module):
    """A 'student' whose jump is the constant cond[:, 0, 0] (so G(c) and G(empty) are known)."""

    def forward(self, z, t, s, cond, omega):
        return torch.zeros_like(z) + cond[:, 0, 0].reshape(-1, 1, 1).to(z.dtype)


@pytest.mark.parametrize("nu, expected", [(0.0, 1.0), (0.5, 2.0), (1.0, 3.0), (2.0, 5.0), (3.0, 7.0)])
def test_nu_combination_sign(nu, expected):
    """Eq. (10): nu G(c) + (1 - nu) G(empty); with G(c) = 3 and G(empty) = 1 that is 1 + 2 nu."""
    from soundctm.sampling import guided_jump

    z = torch.zeros(2, 1, 3)
    cond = torch.full((2, 1, 1), 3.0)
    uncond = torch.full((1, 1, 1), 1.0)
    out = guided_jump(_ConstantJump(), z, 2.0, 1.0, cond, uncond, 4.0, nu)
    torch.testing.assert_close(out, torch.full_like(z, expected))


def test_edm_scalings_closed_forms():
    """c_skip = sd^2 / (t^2 + sd^2), c_out = t sd / sqrt(t^2 + sd^2), c_in = 1 / sqrt(t^2 + sd^2), and
    lambda = (t^2 + sd^2) / (t sd)^2; hand values at sd = 0.5, t = 1: 0.2, 0.4472, 0.8944, 5."""
    sc = EDMScalings(0.5)
    one = torch.tensor([1.0], dtype=torch.float64)
    torch.testing.assert_close(sc.c_skip(one), torch.tensor([0.2], dtype=torch.float64))
    torch.testing.assert_close(sc.c_out(one), torch.tensor([0.5 / 1.25 ** 0.5], dtype=torch.float64))
    torch.testing.assert_close(sc.c_in(one), torch.tensor([1 / 1.25 ** 0.5], dtype=torch.float64))
    torch.testing.assert_close(sc.loss_weight(one), torch.tensor([5.0], dtype=torch.float64))
    for sd in (0.25, 0.5, 2.0):
        sc = EDMScalings(sd)
        t = torch.tensor([0.002, 0.1, 0.7, 3.0, 80.0], dtype=torch.float64)
        torch.testing.assert_close(sc.c_skip(t), sd ** 2 / (t ** 2 + sd ** 2), rtol=1e-12, atol=0)
        torch.testing.assert_close(sc.c_out(t), t * sd / torch.sqrt(t ** 2 + sd ** 2), rtol=1e-12, atol=0)
        # the EDM identity c_skip^2 sd^2 + c_out^2 ... : the optimal-denoiser error is c_out^2 for data std sd
        torch.testing.assert_close(sc.c_out(t) ** 2, sd ** 2 * t ** 2 / (t ** 2 + sd ** 2), rtol=1e-12, atol=0)


class _ExactGaussianF(torch.nn.Module):
    """The F that makes Precond the exact denoiser of N(mu, std^2), written from the closed forms alone:
    t = exp(4 c_noise), z = x sqrt(t^2 + sd^2), F = (D*(z, t) - sd^2 / (t^2 + sd^2) z) / (t sd / sqrt(t^2 + sd^2))."""

    def __init__(self, mu, std, sd):
        super().__init__()
        self.exact, self.sd = GaussianTeacher(mu, std), sd

    def forward(self, x, c_noise, cond, extra_emb=None, *, return_features=False):
        t = torch.exp(4 * c_noise).reshape(-1, 1, 1)
        norm = torch.sqrt(t ** 2 + self.sd ** 2)
        z = x * norm
        return (self.exact(z, t.flatten()) - self.sd ** 2 / norm ** 2 * z) / (t * self.sd / norm)


@pytest.mark.parametrize("mu, std", [(0.0, 0.5), (0.3, 0.8), (-1.0, 0.1)])
def test_precond_around_the_exact_gaussian_denoiser(mu, std):
    """Data N(mu, std^2): Precond(F*) equals the closed-form denoiser mu + std^2 / (std^2 + t^2) (z - mu);
    for data N(0, sd^2) the optimum is F = 0, i.e. D = c_skip z exactly."""
    sd = 0.5
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0.002, 0.05, 0.5, 2.0, 80.0], dtype=torch.float64)
    z = mu + torch.randn(5, 2, 3, generator=g, dtype=torch.float64) * torch.sqrt(std ** 2 + t ** 2).reshape(-1, 1, 1)
    cond = torch.zeros(5, 1, 1)
    exact = GaussianTeacher(mu, std)(z, t)
    out = Precond(_ExactGaussianF(mu, std, sd), sd)(z, t, cond)
    torch.testing.assert_close(out, exact, rtol=1e-10, atol=1e-10)
    zero = Precond(_ExactGaussianF(0.0, sd, sd), sd)
    zero.net.forward = lambda x, c_noise, cond, extra_emb=None, return_features=False: torch.zeros_like(x)
    torch.testing.assert_close(zero(z, t, cond), GaussianTeacher(0.0, sd)(z, t), rtol=1e-12, atol=1e-12)
