"""The distillation options of the ablation tables and of the official code, each against an independent
expectation: closed forms, hand-computed cases, or the exact Gaussian teacher of `tests/gaussian.py`.

Options: distances pseudo-Huber and l1; d_teacher's mean-over-channels reduction; the karras-weighted
student DSM; one solver length k per batch; the training grid extended to sigma 0 (last solver step
Euler); the non-finite step guard; the run key and config.json that record every option.
"""

import json
import math

import numpy as np
import pytest
import torch
from gaussian import GaussianTeacher

import soundctm.train.distill as distill_mod
from soundctm.ctm import (
    CTMLoss,
    TimeDraw,
    draw_tus,
    feature_distance,
    l1,
    pseudo_huber,
    student_dsm_loss,
)
from soundctm.edm import heun_solve, karras_sigmas
from soundctm.experiments.claims import decide
from soundctm.experiments.spec import Claim
from soundctm.experiments.stats import Dist, ItemScores
from soundctm.train.config import TrainConfig, resolve_config
from soundctm.train.gan import BANDS, STFTDiscriminator
from soundctm.train.loop import load_data, run_training
from soundctm.train.tiny import run_key

pytestmark = pytest.mark.fast
SIGMA_D = 0.5


# ---------------------------------------------------------------------------------------------- distances


def test_pseudo_huber_closed_form_and_limits():
    a = torch.tensor([[[3.0, 0.0], [0.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    b = torch.zeros_like(a)
    c = 0.7
    # ||a0 - b0|| = 5, ||a1 - b1|| = 2: sqrt(25 + .49) - .7, sqrt(4 + .49) - .7
    torch.testing.assert_close(pseudo_huber(a, b, c), torch.tensor([math.sqrt(25.49) - 0.7, math.sqrt(4.49) - 0.7],
                                                                   dtype=torch.float64))
    # the default c is iCT's 0.00054 sqrt(d), d = 4 elements per example
    c0 = 0.00054 * 2.0
    torch.testing.assert_close(pseudo_huber(a, b), torch.tensor([math.sqrt(25 + c0**2) - c0, math.sqrt(4 + c0**2) - c0],
                                                                dtype=torch.float64))
    # small differences: ~ ||d||^2 / (2c); large: ~ ||d|| - c
    tiny = torch.full((1, 2, 2), 1e-4, dtype=torch.float64)
    torch.testing.assert_close(pseudo_huber(tiny, torch.zeros_like(tiny), 1.0), torch.tensor([4e-8 / 2],
                                                                                         dtype=torch.float64),
                               rtol=1e-6, atol=0)


def test_l1_is_the_mean_absolute_difference():
    a = torch.tensor([[[1.0, -2.0], [3.0, 0.5]]])
    torch.testing.assert_close(l1(a, torch.zeros_like(a)), torch.tensor([(1 + 2 + 3 + 0.5) / 4]))


def test_mean_channels_weighs_each_block_by_one_over_its_width():
    """The same per-block sums as `test_feature_distance_hand_values`, divided by each block's width."""
    a = torch.tensor([[[3.0, 1.0], [4.0, 0.0]]])  # block of 2 channels: sum-channels distance 1.04
    b = torch.tensor([[[4.0, 0.0], [3.0, 1.0]]])
    # a 4-channel block: TN = e1 vs e2 at both time steps -> sum over channels 2, mean over channels 0.5
    c = torch.zeros(1, 4, 2)
    c[0, 0] = 1.0
    d = torch.zeros(1, 4, 2)
    d[0, 1] = 1.0
    torch.testing.assert_close(feature_distance([a, c], [b, d]), torch.tensor([1.04 + 2.0]))
    torch.testing.assert_close(feature_distance([a, c], [b, d], "mean-channels"), torch.tensor([1.04 / 2 + 2.0 / 4]))
    with pytest.raises(ValueError, match="reduction"):
        feature_distance([a], [b], "max")


class _Scaled(torch.nn.Module):
    """A student jump that is a fixed multiple of the exact Gaussian flow (cond, omega ignored)."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale
        self.teacher = GaussianTeacher(0.0, SIGMA_D)

    def forward(self, z, t, s, cond=None, omega=None):
        b = z.shape[0]
        return self.scale * self.teacher.jump(z, torch.as_tensor(t).expand(b), torch.as_tensor(s).expand(b))


class _Teacher(torch.nn.Module):
    """A Gaussian-data teacher with the Precond call signature D(z, t, cond)."""

    def __init__(self):
        super().__init__()
        self.g = GaussianTeacher(0.0, SIGMA_D)
        self.calls = 0

    def forward(self, z, t, cond=None):
        self.calls += 1
        return self.g(z, t)


def _draw(grid, it, iu, is_):
    it, iu, is_ = (torch.tensor(x) for x in (it, iu, is_))
    return TimeDraw(it, iu, is_, grid[it], grid[iu], grid[is_])


@pytest.mark.parametrize("distance", ["l1", "pseudo_huber"])
def test_ctm_loss_new_distances_compare_the_jumps_at_time_s(distance):
    grid = karras_sigmas(8, dtype=torch.float64)
    draw = _draw(grid, [0, 1], [3, 4], [5, 6])
    z_t = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 10
    loss = CTMLoss(_Teacher(), grid, distance=distance, huber_c=0.3)
    cond, uncond, omega = torch.zeros(2, 1, 1), torch.zeros(1, 1, 1), torch.ones(2, dtype=torch.float64)
    ema, student = _Scaled(0.9), _Scaled(1.2)
    target = loss.target(ema, z_t, draw, cond, uncond, omega)
    est = student(z_t, draw.t, draw.s)
    diff = (est - target).flatten(1)
    want = diff.abs().mean(1) if distance == "l1" else torch.sqrt(diff.pow(2).sum(1) + 0.09) - 0.3
    torch.testing.assert_close(loss(student, ema, z_t, draw, cond, uncond, omega), want)


# ---------------------------------------------------------------------------------------------- DSM weighting


def test_karras_weighted_student_dsm_is_lambda_times_eq8():
    class Half(torch.nn.Module):
        sigma_data = SIGMA_D

        def g(self, z, t, s, cond, omega):
            return 0.5 * z

    sig = torch.tensor([0.01, 0.3, 2.0, 50.0], dtype=torch.float64)
    z0 = torch.ones(4, 1, 2, dtype=torch.float64)
    noise = torch.ones(4, 1, 2, dtype=torch.float64)
    plain = student_dsm_loss(Half(), z0, None, None, sig, noise)
    # g = (z0 + sigma)/2, error = (1 - sigma) / 2 per element
    torch.testing.assert_close(plain, ((1 - sig) / 2) ** 2)
    lam = (sig**2 + SIGMA_D**2) / (sig * SIGMA_D) ** 2
    torch.testing.assert_close(student_dsm_loss(Half(), z0, None, None, sig, noise, "karras"), lam * plain)
    with pytest.raises(ValueError, match="weighting"):
        student_dsm_loss(Half(), z0, None, None, sig, noise, "edm2")


# ---------------------------------------------------------------------------------------------- per-batch k


def test_per_batch_k_is_one_length_drawn_from_p_of_k():
    grid = karras_sigmas(40)
    kmax = 12
    ks, counts = [], np.zeros(kmax + 1)
    for i in range(3000):
        gens = [torch.Generator().manual_seed(10_000 + 8 * i + j) for j in range(8)]
        d = draw_tus(grid, gens, 8, max_ode_steps=kmax, batch_generator=torch.Generator().manual_seed(i))
        k = (d.iu - d.it).unique()
        assert k.numel() == 1  # one solver length for the whole batch
        assert bool((d.is_ >= d.iu).all()) and bool((d.iu <= 39).all())
        ks.append(int(k))
        counts[int(k)] += 1
    # P(k) proportional to k on 1..kmax (the default linear weighting): chi-square goodness of fit
    p = np.arange(1, kmax + 1) / np.arange(1, kmax + 1).sum()
    expected = p * len(ks)
    chi2 = float(((counts[1:] - expected) ** 2 / expected).sum())
    assert chi2 < 31.3  # the 0.999 quantile of chi-square with 11 degrees of freedom


def test_per_batch_k_costs_k_teacher_steps_and_is_the_same_on_every_worker():
    """The teacher solve of a batch costs 2 evaluations per step of its longest path: per-example k costs
    the batch's largest k, per-batch k exactly the one drawn k. Every worker (a different subset of the
    batch's indices) draws the same k."""
    grid = karras_sigmas(40, dtype=torch.float64)
    teacher = _Teacher()
    z = torch.randn(8, 1, 2, dtype=torch.float64)
    cfg = dict(kind="distill", data="synthetic", batch_size=8, synthetic_clips=8, max_ode_steps=12)
    tasks = {m: distill_mod.DistillTask(resolve_config(TrainConfig(**cfg, k_sampling=m)), load_data(
        resolve_config(TrainConfig(**cfg)), log=lambda *a: None), torch.device("cpu"), log=lambda *a: None)
        for m in ("per-example", "per-batch")}
    for step in range(5):
        d_all = tasks["per-batch"].draws(step, list(range(8)))
        d_w0, d_w1 = tasks["per-batch"].draws(step, [0, 2, 4, 6]), tasks["per-batch"].draws(step, [1, 3, 5, 7])
        k = int((d_all.times.iu - d_all.times.it)[0])
        for d in (d_all, d_w0, d_w1):
            assert set((d.times.iu - d.times.it).tolist()) == {k}
        for mode, want in (("per-batch", k), ("per-example", None)):
            d = tasks[mode].draws(step, list(range(8)))
            kk = d.times.iu - d.times.it
            teacher.calls = 0
            heun_solve(lambda x, t: teacher(x, t), z, d.times.t.double(), d.times.u.double(), sigmas=grid)
            assert teacher.calls == 2 * (want if want is not None else int(kk.max()))


# ---------------------------------------------------------------------------------------------- where t and s fall


def _plain_tus(r: torch.Tensor, n: int, kmax: int):
    """draw_tus's documented draw, rebuilt from its uniforms r [B, 3]: k by inverting the linear P(k) CDF,
    t index floor(r1 (n - k)), s index u + floor(r2 (n - u))."""
    w = np.arange(1, kmax + 1, dtype=np.float64)
    cdf = np.cumsum(w / w.sum())
    out = []
    for r0, r1, r2 in r.double().tolist():
        k = min(int(np.searchsorted(cdf, r0, side="right")), kmax - 1) + 1
        it = min(math.floor(r1 * (n - k)), n - 1 - k)
        iu = it + k
        out.append((it, iu, iu + min(math.floor(r2 * (n - iu)), n - 1 - iu)))
    return out


def test_t_max_and_s_end_fractions_put_their_mass_on_the_grid_ends_and_move_nothing_else():
    """With fractions q (t) and p (s) the draw is: t = sigma_max where r1 < q, else the plain draw of the
    rescaled uniform (r1 - q) / (1 - q); the same for s with r2 and p. q = p = 0 is the plain draw, and the
    step's other draws (omega, dropout, noise, DSM) are the same for every q and p."""
    from soundctm.ctm import draw_distill
    from soundctm.rng import rand

    n, kmax, b = 40, 16, 64
    grid = karras_sigmas(n)
    for i in range(20):
        seeds = range(100 * i, 100 * i + b)
        r = rand((b, 3), [torch.Generator().manual_seed(s) for s in seeds], dtype=torch.float64)
        plain = draw_tus(grid, [torch.Generator().manual_seed(s) for s in seeds], b, max_ode_steps=kmax)
        assert list(zip(plain.it.tolist(), plain.iu.tolist(), plain.is_.tolist())) == _plain_tus(r, n, kmax)
        q, p = 0.25, 0.5
        d = draw_tus(grid, [torch.Generator().manual_seed(s) for s in seeds], b, max_ode_steps=kmax,
                     t_max_fraction=q, s_end_fraction=p)
        r_t = r.clone()
        r_t[:, 1] = ((r[:, 1] - q) / (1 - q)).clamp(0, 1)
        r_t[:, 2] = ((r[:, 2] - p) / (1 - p)).clamp(0, 1)
        for j, (it, iu, _) in enumerate(_plain_tus(r_t, n, kmax)):
            k = iu - it
            want_t = 0 if r[j, 1] < q else it
            want_s = n - 1 if r[j, 2] < p else (want_t + k) + min(math.floor(float(r_t[j, 2]) * (n - want_t - k)),
                                                               n - 1 - want_t - k)
            assert (int(d.it[j]), int(d.iu[j]), int(d.is_[j])) == (want_t, want_t + k, want_s)
        assert torch.equal(d.t, grid[d.it]) and torch.equal(d.s, grid[d.is_])

        def draws(seeds=seeds, **kw):
            return draw_distill([torch.Generator().manual_seed(s) for s in seeds], grid, (2, 3),
                                omega_range=(2.0, 5.0), p_uncond=0.1, max_ode_steps=kmax, **kw)
        a, c = draws(), draws(t_max_fraction=q, s_end_fraction=p)
        for name in ("omega", "drop", "noise", "dsm_sigma", "dsm_noise"):
            assert torch.equal(getattr(a, name), getattr(c, name)), name
    # the frequencies: P(t = sigma_max) = q + (1 - q) E[1 / (n - k)] over k; P(s = end) >= p
    gens = [torch.Generator().manual_seed(7_000 + j) for j in range(4000)]
    d = draw_tus(grid, gens, 4000, max_ode_steps=kmax, t_max_fraction=0.25, s_end_fraction=0.5)
    ks = np.arange(1, kmax + 1)
    pk = ks / ks.sum()
    p_t0 = 0.25 + 0.75 * float((pk / (n - ks)).sum())
    assert abs(float((d.it == 0).float().mean()) - p_t0) < 4 * math.sqrt(p_t0 * (1 - p_t0) / 4000)
    assert float((d.is_ == n - 1).float().mean()) > 0.5 - 4 * math.sqrt(0.25 / 4000)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="fraction"):
            draw_tus(grid, gens[:2], 2, s_end_fraction=bad)
        with pytest.raises(ValueError, match="fraction"):
            resolve_config(TrainConfig(kind="distill", data="synthetic", t_max_fraction=bad))


def test_the_fractions_name_a_run_only_when_set():
    base = dict(kind="distill", data="synthetic")
    assert run_key(TrainConfig(**base)) == run_key(TrainConfig(**base, t_max_fraction=0.0, s_end_fraction=0.0))
    keys = {run_key(TrainConfig(**base, **kw)) for kw in ({}, dict(t_max_fraction=0.25), dict(s_end_fraction=0.5))}
    assert len(keys) == 3
    with pytest.raises(ValueError, match="t_max_fraction"):
        resolve_config(TrainConfig(kind="distill", data="synthetic", objective="cd", t_max_fraction=0.25))


# ---------------------------------------------------------------------------------------------- grid to zero


def test_grid_to_zero_last_solver_step_is_euler_and_the_target_jump_is_the_identity():
    grid = torch.cat([karras_sigmas(8, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    teacher = _Teacher()
    z = torch.randn(3, 1, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    smin = float(grid[-2])
    # one step sigma_min -> 0 is Euler: z + (0 - s)(z - D(z, s)) / s = D(z, s), one evaluation
    teacher.calls = 0
    out = heun_solve(lambda x, t: teacher(x, t), z, smin, 0.0, sigmas=grid)
    torch.testing.assert_close(out, teacher.g(z, torch.full((3,), smin, dtype=torch.float64)))
    assert teacher.calls == 1
    # a draw whose solve ends at 0 (u = s = 0): the target is the solve itself, no EMA jump is made
    draw = _draw(grid, [5, 6, 2], [8, 8, 4], [8, 8, 6])
    loss = CTMLoss(_Teacher(), grid, distance="l2_0")
    ema = _Scaled(0.9)
    cond, uncond, omega = torch.zeros(3, 1, 1), torch.zeros(1, 1, 1), torch.ones(3, dtype=torch.float64)
    target = loss.target(ema, z * 10, draw, cond, uncond, omega)
    solved = heun_solve(lambda x, t: teacher(x, t), z * 10, draw.t, draw.u, sigmas=grid)
    torch.testing.assert_close(target[:2], solved[:2])
    torch.testing.assert_close(target[2:], ema(solved[2:], draw.u[2:], draw.s[2:]))
    # and the l2_0 distance of a jump that ends at 0 is the plain l2 of the two (no transport)
    student = _Scaled(1.1)
    val = loss(student, ema, z * 10, draw, cond, uncond, omega)
    est = student(z * 10, draw.t, draw.s)
    torch.testing.assert_close(val[:2], (est[:2] - target[:2]).pow(2).flatten(1).mean(1))


def test_grid_to_zero_task_draws_reach_sigma_zero():
    cfg = resolve_config(TrainConfig(kind="distill", data="synthetic", batch_size=8, synthetic_clips=8,
                                     grid_to_zero=True))
    task = distill_mod.DistillTask(cfg, load_data(cfg, log=lambda *a: None), torch.device("cpu"), log=lambda *a: None)
    assert task.sigmas.shape[0] == cfg.n_grid + 1 and float(task.sigmas[-1]) == 0.0
    s = torch.cat([task.draws(step, list(range(8))).times.s for step in range(40)])
    assert bool((s == 0).any()) and bool((task.draws(0, list(range(8))).times.t > 0).all())
    out = task.losses(0, 0, 1)
    assert math.isfinite(float(out["loss"].detach()))


# ---------------------------------------------------------------------------------------------- non-finite guard


def _synthetic(tmp_path, name, **kw):
    cfg = TrainConfig(kind="distill", preset="tiny-unet", data="synthetic", batch_size=4, synthetic_clips=4,
                      steps=4, checkpoint_every=100, max_ode_steps=2, threads=1, **kw)
    return cfg, tmp_path / name


def test_nonfinite_skip_drops_the_step_and_counts_it(tmp_path, monkeypatch):
    real = distill_mod.DistillTask.losses

    def poisoned(self, step, rank, world):
        out = real(self, step, rank, world)
        if step == 1:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(distill_mod.DistillTask, "losses", poisoned)
    cfg, run_dir = _synthetic(tmp_path, "skip", nonfinite="skip")
    summary = run_training(cfg, run_dir, progress=False, log=lambda *a, **k: None)
    assert summary["skipped_steps"] == 1
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in recs] == [0, 1, 1, 1]
    from soundctm.train.checkpoint import load_export

    model = load_export(run_dir / "export.safetensors")
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    cfg, run_dir = _synthetic(tmp_path, "raise")
    with pytest.raises(FloatingPointError, match="step 1"):
        run_training(cfg, run_dir, progress=False, log=lambda *a, **k: None)


def test_a_skipped_step_leaves_weights_and_ema_as_they_were(tmp_path, monkeypatch):
    """Steps 0, 2, 3 of a run that skips step 1 equal steps 0, 2, 3 of a run where step 1's optimiser
    step and EMA update are removed by hand: compare against a run of step 0 only for step 1's state."""
    real = distill_mod.DistillTask.losses
    seen = {}

    def poisoned(self, step, rank, world):
        out = real(self, step, rank, world)
        if step == 1:
            seen["before"] = [p.detach().clone() for p in self.model.parameters()]
            seen["ema_before"] = [p.detach().clone() for p in self.ema.parameters()]
            seen["task"] = self
            out["loss"] = out["loss"] * float("inf")
        if step == 2:
            seen["after"] = [p.detach().clone() for p in self.model.parameters()]
            seen["ema_after"] = [p.detach().clone() for p in self.ema.parameters()]
        return out

    monkeypatch.setattr(distill_mod.DistillTask, "losses", poisoned)
    cfg, run_dir = _synthetic(tmp_path, "skip2", nonfinite="skip")
    run_training(cfg, run_dir, progress=False, log=lambda *a, **k: None)
    for a, b in zip(seen["before"], seen["after"]):
        assert torch.equal(a, b)
    for a, b in zip(seen["ema_before"], seen["ema_after"]):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------- recorded options


def test_every_option_is_validated_recorded_and_keyed(tmp_path):
    base = TrainConfig(kind="distill", data="synthetic")
    key0 = run_key(base)
    # the new settings at their defaults do not rename existing runs: the key of the config is the key of
    # the same config with the defaults spelled out
    spelled = TrainConfig(kind="distill", data="synthetic", dsm_weighting="none", k_sampling="per-example",
                          loss_reduction="sum-channels", grid_to_zero=False, huber_c=None, nonfinite="raise")
    assert run_key(spelled) == key0
    changed = dict(dsm_weighting="karras", k_sampling="per-batch", loss_reduction="mean-channels",
                   grid_to_zero=True, huber_c=0.01, nonfinite="skip", distance="pseudo_huber")
    keys = {run_key(TrainConfig(kind="distill", data="synthetic", **{k: v})) for k, v in changed.items()}
    assert len(keys) == len(changed) and key0 not in keys
    for name, bad in (("dsm_weighting", "edm2"), ("k_sampling", "per-step"), ("loss_reduction", "max"),
                      ("nonfinite", "ignore"), ("distance", "l3"), ("huber_c", -1.0)):
        with pytest.raises(ValueError, match=name if name != "distance" else "distance"):
            resolve_config(TrainConfig(kind="distill", data="synthetic", **{name: bad}))
    cfg, run_dir = _synthetic(tmp_path, "rec", k_sampling="per-batch", dsm_weighting="karras")
    run_training(cfg, run_dir, progress=False, log=lambda *a, **k: None)
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["k_sampling"] == "per-batch" and saved["dsm_weighting"] == "karras"


# ---------------------------------------------------------------------------------------------- discriminator


def test_multiband_stft_discriminator_covers_every_bin_once():
    d = STFTDiscriminator(256)
    n_bins = 129
    edges = [lo for lo, _ in d.bands] + [d.bands[-1][1]]
    assert edges[0] == 0 and edges[-1] == n_bins and all(a < b for a, b in zip(edges, edges[1:]))
    assert len(d.bands) == len(BANDS) == len(d.band_layers)
    logits, feats = d(torch.randn(2, 1, 4096))
    assert logits.shape[0] == 2 and len(feats) == len(BANDS) * 3
    # each band has its own conv stack: no weight is shared between bands
    ids = [id(p) for layers in d.band_layers for p in layers.parameters()]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------------------------------------- claims


def _dist(value, samples):
    return Dist(float(value), np.asarray(samples, float))


def test_comparable_needs_the_interval_inside_the_margin_both_ways():
    base = {"zeros": {"fd": _dist(100, [100] * 40)}, "vae-recon": {"fd": _dist(0, [0] * 40)}}
    # q = (M - 100) / (0 - 100): a at 30 -> q .7; b at 32 +- 2 -> q .66-.70
    rng = np.random.default_rng(0)
    b_s = 32 + rng.uniform(-2, 2, 40)
    dists = {**base, "a": {"fd": _dist(30, [30] * 40)}, "b": {"fd": _dist(32, b_s)}}
    v = decide(Claim("c", "", "comparable", "fd", "a", "b", margin=0.1), dists)
    assert v.supported and abs(v.estimate - 0.02) < 1e-12
    far = {**dists, "b": {"fd": _dist(50, 50 + rng.uniform(-2, 2, 40))}}  # q(a) - q(b) = +0.2: a far better
    assert not decide(Claim("c", "", "comparable", "fd", "a", "b", margin=0.1), far).supported
    assert decide(Claim("c", "", "close", "fd", "a", "b", margin=0.1), far).supported  # "close" is one-sided


def test_heavier_uses_the_least_favourable_pairing_of_seeds():
    mem = {"gan": [140.0, 150.0], "plain": [100.0, 120.0]}
    v = decide(Claim("m", "", "heavier", None, "gan", "plain", margin=1.1), {}, None, mem)
    assert v.supported and v.lo == pytest.approx(140 / 120) and v.estimate == pytest.approx(145 / 110)
    assert not decide(Claim("m", "", "heavier", None, "gan", "plain", margin=1.2), {}, None, mem).supported
    with pytest.raises(ValueError, match="memory"):
        decide(Claim("m", "", "heavier", None, "gan", "plain", margin=1.1), {}, None, {})


def test_item_scores_subset_keeps_each_items_frames():
    sc = ItemScores(np.array([0, 0, 1]), np.arange(12.0).reshape(6, 2), np.array([1, 2, 3]),
                    np.eye(3), np.array([0.1, 0.2, 0.3]))
    sub = sc.subset(np.array([False, True, True]))
    np.testing.assert_array_equal(sub.frames, np.arange(2.0, 12.0).reshape(5, 2))
    np.testing.assert_array_equal(sub.unit, [0, 1])
    np.testing.assert_array_equal(sub.clap, [0.2, 0.3])
    np.testing.assert_array_equal(sub.clip_embeddings(), [[3.0, 4.0], [8.0, 9.0]])
