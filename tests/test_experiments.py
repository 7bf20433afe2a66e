"""The experiments framework: bootstrap statistics against direct recomputation, claims against
hand-computed cases (including the trivial-baseline self-test), and the declarations' validation."""

import numpy as np
import pytest

from soundctm.experiments.claims import check, decide, quality_q
from soundctm.experiments.spec import Claim, Row, Run, Table
from soundctm.experiments.stats import Bootstrap, Dist, ItemScores, kid_unbiased, kl_per_item, metric_dists
from soundctm.metrics import functional as Fm


def _scores(rng, n_units=12, per_unit=3, frames=4, d=5, shift=0.0, k=6):
    unit = np.repeat(np.arange(n_units), per_unit)
    counts = rng.integers(1, frames + 1, size=len(unit))
    fr = rng.normal(size=(counts.sum(), d)) + shift
    logits = rng.normal(size=(len(unit), k))
    return ItemScores(unit, fr, counts, Fm.softmax(logits), rng.uniform(-1, 1, size=len(unit)))


def _expand(sc: ItemScores, count_row: np.ndarray):
    """The resampled item set of one bootstrap draw, built explicitly (every item of a drawn unit, k times)."""
    starts = np.concatenate([[0], np.cumsum(sc.frame_counts)])
    items = [i for u, c in enumerate(count_row) for _ in range(c) for i in np.flatnonzero(sc.unit == u)]
    frames = np.concatenate([sc.frames[starts[i]:starts[i + 1]] for i in items])
    return items, frames


def test_bootstrap_fd_kl_clap_equal_direct_recomputation_on_the_resampled_sets():
    """Each bootstrap sample is the metric recomputed on the explicitly resampled item set, shifted by the
    bootstrap's bias estimate (mean of the raw samples - the point value), so the samples average to it."""
    rng = np.random.default_rng(0)
    g, ref = _scores(rng), _scores(rng, per_unit=1, shift=0.5)
    boot = Bootstrap(12, n_boot=5, seed=3)
    d = metric_dists(g, ref, ("fd", "kid", "kl", "clap"), boot)
    mu_r, sig_r = Fm.stats(ref.frames)
    raw = {m: [] for m in ("fd", "kid", "kl", "clap")}
    for row in boot.counts():
        items, frames = _expand(g, row)
        mu, sig = Fm.stats(frames)
        raw["fd"].append(Fm.frechet_distance(mu, sig, mu_r, sig_r))
        raw["kl"].append(Fm.kl_passt_sam(g.probs[items], ref.probs[g.unit[items]]))
        raw["clap"].append(g.clap[items].mean())
        clips = np.stack([frames_of.mean(0) for frames_of in
                          (g.frames[np.concatenate([[0], np.cumsum(g.frame_counts)])[i]:
                                    np.cumsum(g.frame_counts)[i]] for i in items)])
        raw["kid"].append(kid_unbiased(clips, ref.clip_embeddings()))
    # the point values are the plain definitions on the whole set
    value = {"fd": Fm.frechet_distance(*Fm.stats(g.frames), mu_r, sig_r),
             "kl": Fm.kl_passt_sam(g.probs, ref.probs[g.unit]), "clap": g.clap.mean(),
             "kid": kid_unbiased(g.clip_embeddings(), ref.clip_embeddings())}
    for m, r in raw.items():
        r = np.array(r)
        assert d[m].value == pytest.approx(value[m], rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(d[m].samples, r - (r.mean() - value[m]), rtol=1e-6, atol=1e-9)
        assert d[m].samples.mean() == pytest.approx(value[m], rel=1e-9, abs=1e-9)


def test_bias_correction_centres_the_interval_of_a_set_against_itself():
    """FD of a set against itself is 0, and every resample with duplicated units has FD > 0: the raw
    percentile interval lies above the point value; the bias-corrected one contains it."""
    rng = np.random.default_rng(5)
    unit = np.repeat(np.arange(30), 2)
    counts = np.full(len(unit), 3)
    g = ItemScores(unit, rng.normal(size=(counts.sum(), 3)), counts)
    d = metric_dists(g, g, ("fd",), Bootstrap(30, n_boot=100, seed=0))["fd"]
    assert d.value == pytest.approx(0.0, abs=1e-8)
    lo, hi = d.interval()
    assert lo <= d.value <= hi
    raws = []  # the uncorrected bootstrap, recomputed on the explicit resamples
    for row in Bootstrap(30, n_boot=100, seed=0).counts():
        items, frames = _expand(g, row)
        raws.append(Fm.frechet_distance(*Fm.stats(frames), *Fm.stats(g.frames)))
    assert np.quantile(raws, 0.025) > d.value  # uncorrected: the whole interval above the value


def test_kid_matches_a_direct_double_loop_and_is_unbiased():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 0.3
    k = lambda a, b: (a @ b / 3 + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert kid_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    # same distribution: the unbiased estimate averages to ~0 (and takes negative values)
    vals = [kid_unbiased(rng.normal(size=(40, 4)), rng.normal(size=(40, 4))) for _ in range(200)]
    assert abs(np.mean(vals)) < 3 * np.std(vals) / np.sqrt(len(vals))
    assert min(vals) < 0


def test_kl_per_item_is_the_toolkit_definition_clip_by_clip():
    rng = np.random.default_rng(2)
    p, q = Fm.softmax(rng.normal(size=(9, 4))), Fm.softmax(rng.normal(size=(9, 4)))
    per = kl_per_item(p, q)
    assert per.mean() == pytest.approx(Fm.kl_passt_sam(p, q), rel=1e-12)
    assert per[0] == pytest.approx(float(np.sum(p[0] * (np.log(p[0]) - np.log(q[0] + Fm.KL_EPS)))), rel=1e-12)


def _dist(value, spread, n=400, seed=0):
    return Dist(value, value + spread * np.random.default_rng(seed).standard_normal(n))


def test_improves_is_decided_on_the_paired_interval_and_the_zero_row_fails_it():
    # FD: zeros 100, student-1 50, student-16 40 (lower is better). Shared noise = a paired bootstrap.
    noise = np.random.default_rng(0).standard_normal(400)
    dists = {"student-1": {"fd": Dist(50.0, 50 + 3 * noise)}, "student-16": {"fd": Dist(40.0, 40 + 3 * noise + 0.5)},
             "zeros": {"fd": Dist(100.0, 100 + 3 * noise)}}
    c = Claim("b", "improves", "improves", "fd", "student-1", "student-16", subject="student-16")
    v = check(c, dists)
    assert v.supported and v.estimate == pytest.approx(10.0)
    assert v.self_test is not None and not v.self_test.supported and not v.broken
    assert v.label == "SUPPORTED"
    # the zero row in place of student-16: an "improvement" of 50 - 100 = -50, not supported
    assert v.self_test.estimate == pytest.approx(-50.0)


def test_improves_with_overlapping_unpaired_noise_is_not_supported():
    dists = {"a": {"clap": _dist(0.30, 0.02, seed=1)}, "b": {"clap": _dist(0.305, 0.02, seed=2)},
             "zeros": {"clap": _dist(0.0, 0.01, seed=3)}}
    v = decide(Claim("x", "", "improves", "clap", "a", "b"), dists)
    assert v.estimate == pytest.approx(0.005) and v.lo < 0 < v.hi and not v.supported


def test_close_uses_the_q_scale_anchored_by_zeros_and_the_codec():
    n = 300
    z = np.zeros(n)
    dists = {"zeros": {"fd": Dist(500.0, 500 + z)}, "vae-recon": {"fd": Dist(100.0, 100 + z)},
             "teacher": {"fd": Dist(200.0, 200 + z)}, "student-16": {"fd": Dist(240.0, 240 + z)}}
    q = quality_q("fd", dists, "teacher")
    assert q.value == pytest.approx((500 - 200) / (500 - 100))  # 0.75
    c = Claim("c", "", "close", "fd", "student-16", "teacher", margin=0.1, subject="student-16")
    v = check(c, dists)
    assert v.estimate == pytest.approx((500 - 240) / 400 - 0.75)  # -0.1 -> exactly at the margin
    assert v.supported
    assert not v.self_test.supported  # q(zeros) = 0, far from 0.75
    far = {**dists, "student-16": {"fd": Dist(300.0, 300 + z)}}
    assert not decide(c, far).supported
    # a margin so loose that decoded zeros pass too: the report calls the claim broken
    loose = check(Claim("c", "", "close", "fd", "student-16", "teacher", margin=0.8, subject="student-16"), dists)
    assert loose.supported and loose.self_test.supported and loose.broken and loose.label.startswith("BROKEN")


def test_faster_uses_the_least_favourable_pairing_of_repeats():
    c = Claim("a", "", "faster", None, "student-1", "teacher", margin=10.0)
    v = decide(c, {}, {"student-1": [0.01, 0.012, 0.02], "teacher": [0.25, 0.3, 0.35]})
    assert v.lo == pytest.approx(0.25 / 0.02) and v.supported
    assert not decide(c, {}, {"student-1": [0.01, 0.03], "teacher": [0.25, 0.3]}).supported


def test_declarations_reject_bad_input():
    t = Run("teacher")
    s = Run("student", options={"distance": "d_teacher"}, seeds=(0, 1), teacher=t)
    with pytest.raises(ValueError, match="needs a teacher"):
        Run("student")
    with pytest.raises(ValueError, match="sampler"):
        Row("x", run=t, sampler="ctm", steps=1)
    with pytest.raises(ValueError, match="gamma"):
        Row("x", run=s, sampler="ctm", steps=1, gamma=1.5)
    with pytest.raises(ValueError, match="steps"):
        Row("x", run=s, sampler="ctm", steps=0)
    rows = (Row("s1", run=s, steps=1), Row("zeros", source="zeros"))
    with pytest.raises(ValueError, match="lacks"):
        Table("t", "t", rows, claims=(Claim("c", "", "improves", "fd", "s1", "s16"),))
    # runs are values: the same declaration is the same artifact key
    assert Run("student", options={"distance": "d_teacher"}, seeds=(0, 1), teacher=Run("teacher")) == s
    assert s.single(1).seeds == (1,) and s.settings()["options"] == [["distance", "d_teacher"]]


def test_row_grids_and_the_euler_posterior_mean_on_the_exact_gaussian_teacher():
    import torch
    from gaussian import GaussianTeacher

    from soundctm.experiments.generation import row_grid, sample_row

    t, s = Run("teacher"), Run("student", teacher=Run("teacher"))
    assert row_grid(Row("e", run=t, sampler="euler", steps=1)).tolist() == [80.0, 0.0]
    heun = row_grid(Row("h", run=t, sampler="heun", steps=40))
    i = torch.arange(40, dtype=torch.float64)
    closed = (80.0 ** (1 / 7) + i / 39 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    assert torch.allclose(heun.double(), closed, rtol=1e-5)
    assert len(row_grid(Row("c", run=s, sampler="ctm", steps=4))) == 5
    # one Euler step from sigma_max to 0 is the posterior mean D(z_T, sigma_max) (here with omega = 1)
    g = GaussianTeacher(mu=0.3, sigma=0.5)
    den = lambda z, sig, cond: g(z, sig)
    z = 80.0 * torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(0))
    cond = torch.zeros(3, 1, 1)
    out = sample_row(Row("e", run=t, sampler="euler", steps=1, omega=1.0), den, z, cond, cond[:1])
    # (float32: z + (0 - 80) (z - D) / 80 cancels |z| ~ 100 down to D ~ 0.3, hence the tolerance)
    assert torch.allclose(out, 0.3 + 0.25 / (0.25 + 6400.0) * (z - 0.3), atol=1e-4)
    assert not torch.allclose(out, torch.full_like(out, 0.3), atol=1e-3)  # not just the mean
