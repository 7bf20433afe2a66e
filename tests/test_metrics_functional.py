"""Closed-form checks of the metric formulas in soundctm.metrics.functional."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from soundctm.metrics import functional as Fm


# ----------------------------------------------------------------------------- Fréchet distance
def test_fd_1d_gaussians_closed_form():
    # FD(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2
    for m1, s1, m2, s2 in [(0.0, 1.0, 0.0, 1.0), (1.5, 2.0, -0.5, 0.5), (3.0, 0.1, 3.0, 4.0)]:
        fd = Fm.frechet_distance([m1], [[s1**2]], [m2], [[s2**2]])
        assert fd == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-9, abs=1e-12)


def test_fd_commuting_covariances_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # shared eigenbasis -> commuting covariances
    l1, l2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    s1, s2 = q @ np.diag(l1) @ q.T, q @ np.diag(l2) @ q.T
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2)
    assert Fm.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    # diagonal case
    assert Fm.frechet_distance(mu1, np.diag(l1), mu2, np.diag(l2)) == pytest.approx(expected, rel=1e-8)


def test_fd_self_is_zero_and_symmetric():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    b = rng.normal(size=(400, 8)) + 0.3
    mu_a, s_a = Fm.stats(a)
    mu_b, s_b = Fm.stats(b)
    assert abs(Fm.frechet_distance(mu_a, s_a, mu_a, s_a)) < 1e-8
    assert Fm.frechet_distance(mu_a, s_a, mu_b, s_b) == pytest.approx(
        Fm.frechet_distance(mu_b, s_b, mu_a, s_a), rel=1e-8
    )


def test_fd_singular_covariance_retries_with_eps():
    # rank-deficient covariances (fewer samples than dims) must still give a finite number
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 20)), rng.normal(size=(5, 20))
    fd = Fm.frechet_distance_from_embeddings(a, b)
    assert np.isfinite(fd)
    zero = np.zeros((4, 4))
    assert Fm.frechet_distance(np.zeros(4), zero, np.ones(4), zero) == pytest.approx(4.0, abs=1e-5)


def test_stats_matches_numpy_and_rejects_bad_input():
    x = np.arange(12, dtype=float).reshape(4, 3) ** 1.5
    mu, sigma = Fm.stats(x)
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(sigma, np.cov(x.T))
    with pytest.raises(ValueError):
        Fm.stats(x[:1])
    with pytest.raises(ValueError):
        Fm.stats(np.array([[np.nan, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError):
        Fm.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_fd_matches_frechet_audio_distance_package():
    fad = pytest.importorskip("frechet_audio_distance")
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 16))
    b = rng.normal(size=(250, 16)) * 1.3 + 0.2
    mu1, s1 = Fm.stats(a)
    mu2, s2 = Fm.stats(b)
    ref = fad.FrechetAudioDistance.calculate_frechet_distance(None, mu1, s1, mu2, s2)
    assert Fm.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(float(ref), rel=1e-6)


# ----------------------------------------------------------------------------- KL / IS
def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def test_kl_directions_closed_form():
    p_gen = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]])
    p_ref = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    exp_sam = np.mean([_kl(g, [r + 1e-6 for r in rr]) for g, rr in zip(p_gen, p_ref)])
    exp_ldm = np.mean([_kl(r, [g + 1e-6 for g in gg]) for r, gg in zip(p_ref, p_gen)])
    assert Fm.kl_passt_sam(p_gen, p_ref) == pytest.approx(exp_sam, rel=1e-12)
    assert Fm.kl_audioldm(p_ref, p_gen) == pytest.approx(exp_ldm, rel=1e-12)
    assert exp_sam != pytest.approx(exp_ldm, rel=1e-3)  # the two directions really differ


def test_kl_identical_is_zero_and_zero_probabilities_are_finite():
    p = Fm.softmax(np.random.default_rng(0).normal(size=(10, 5)) * 3)
    assert abs(Fm.kl_passt_sam(p, p)) < 1e-5
    assert abs(Fm.kl_audioldm(p, p)) < 1e-5
    onehot = np.eye(4)
    v = Fm.kl_passt_sam(onehot, onehot[::-1])
    assert np.isfinite(v) and v == pytest.approx(-math.log(1e-6), rel=1e-6)
    with pytest.raises(ValueError):
        Fm.kl_passt_sam(p, p[:5])
    with pytest.raises(ValueError):
        Fm.kl_audioldm(p * 2, p)


def test_inception_score_closed_form():
    k = 10
    # confident and uniformly spread over classes: IS == number of classes in each split
    probs = np.repeat(np.eye(k), 10, axis=0)
    m, s = Fm.inception_score(probs, splits=1)
    assert m == pytest.approx(k, rel=1e-12) and s == 0.0
    # every clip the same distribution: IS == 1
    flat = np.tile(Fm.softmax(np.arange(k, dtype=float)), (50, 1))
    m, s = Fm.inception_score(flat, splits=5)
    assert m == pytest.approx(1.0, abs=1e-12) and s == pytest.approx(0.0, abs=1e-12)
    # splits over a seeded permutation: hand-computed from the same definition
    probs = Fm.softmax(np.random.default_rng(4).normal(size=(40, 6)) * 2)
    perm = np.random.RandomState(2020).permutation(40)
    pp = probs[perm]
    exp = []
    for i in range(4):
        c = pp[i * 10 : (i + 1) * 10]
        q = c.mean(0)
        exp.append(math.exp(np.mean([_kl(r, q) for r in c])))
    m, s = Fm.inception_score(probs, splits=4, seed=2020)
    assert m == pytest.approx(np.mean(exp), rel=1e-12) and s == pytest.approx(np.std(exp), rel=1e-9)
    with pytest.raises(ValueError):
        Fm.inception_score(probs[:3], splits=10)


# ----------------------------------------------------------------------------- CLAP score
def test_clap_score_cosine_and_zero_vectors():
    t = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [0.0, 0.0]])
    a = np.array([[2.0, 0.0], [0.0, -1.0], [1.0, 0.0], [1.0, 1.0]])
    expected = np.mean([1.0, -1.0, 1 / math.sqrt(2), 0.0])
    assert Fm.clap_score(t, a) == pytest.approx(expected, rel=1e-12)
    assert Fm.clap_score(np.zeros((3, 4)), np.zeros((3, 4))) == 0.0


# ----------------------------------------------------------------------------- LSD
def test_lsd_closed_form_gain_and_identity():
    x = np.random.default_rng(5).normal(size=16000)
    assert Fm.lsd(x, x) == 0.0
    g = 3.0  # a gain shifts log10 power by 2 log10 g in every bin
    assert Fm.lsd(x, g * x) == pytest.approx(2 * math.log10(g), rel=1e-6)
    batch = np.stack([x, x])
    assert Fm.lsd(batch, np.stack([x, 10 * x])) == pytest.approx(1.0, rel=1e-6)  # mean of 0 and 2
    with pytest.raises(ValueError):
        Fm.lsd(x, x[:-1])


def test_lsd_grows_with_lowpass_severity():
    from scipy.signal import butter, sosfilt

    x = np.random.default_rng(6).normal(size=16000)
    vals = [Fm.lsd(x, sosfilt(butter(8, fc, fs=16000, output="sos"), x)) for fc in (6000, 3000, 1000)]
    assert vals[0] < vals[1] < vals[2]


# ----------------------------------------------------------------------------- LPAPS
def test_lpaps_closed_form():
    torch.manual_seed(0)
    f = [torch.randn(2, 8, 5, 3), torch.randn(2, 16, 7)]
    assert torch.allclose(Fm.lpaps(f, f), torch.zeros(2), atol=1e-6)
    # opposite features: |u - (-u)|^2 = 4 per position for each stage -> 4 * n_stages
    neg = [-x for x in f]
    assert torch.allclose(Fm.lpaps(f, neg), torch.full((2,), 8.0), atol=1e-5)
    # scaling a feature map does not change the distance (channel normalisation)
    assert torch.allclose(Fm.lpaps(f, [3 * x for x in f]), torch.zeros(2), atol=1e-6)
    # orthogonal one-hot channels: |e_i - e_j|^2 = 2
    a = torch.zeros(1, 4, 1)
    b = torch.zeros(1, 4, 1)
    a[0, 0], b[0, 1] = 1.0, 1.0
    assert Fm.lpaps([a], [b]).item() == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(ValueError):
        Fm.lpaps(f, f[:1])


# ----------------------------------------------------------------------------- intensity
def test_intensity_curve_constant_tone_and_silence():
    sr = 16000
    t = np.arange(sr * 2) / sr
    amp = 0.5
    x = amp * np.sin(2 * np.pi * 1000 * t)  # RMS = amp / sqrt(2) for frames of whole periods
    c = Fm.intensity_curve(x, sr, frame=1024, hop=256)
    expected = 20 * math.log10(amp / math.sqrt(2))
    np.testing.assert_allclose(c[:-4], expected, atol=0.01)  # tail frames are zero-padded
    silent = Fm.intensity_curve(np.zeros(sr), sr, floor_db=-100.0)
    assert np.isfinite(silent).all()
    np.testing.assert_allclose(silent, -100.0)


def test_intensity_curve_follows_a_ramp_and_torch_twin_agrees():
    sr = 16000
    n = sr * 3
    db = np.linspace(-40, -10, n)
    rng = np.random.default_rng(7)
    x = rng.normal(size=n) * 10 ** (db / 20)
    c = Fm.intensity_curve(x, sr, frame=1024, hop=256)
    assert np.corrcoef(c, np.arange(len(c)))[0, 1] > 0.99
    assert 25 < c[-10] - c[10] < 35
    ct = Fm.intensity_curve_torch(torch.tensor(x)[None], sr, frame=1024, hop=256)
    np.testing.assert_allclose(ct[0].numpy(), c, atol=1e-6)
    # gradients flow (needed by loss-based guidance)
    xt = torch.tensor(x, requires_grad=True)
    Fm.intensity_curve_torch(xt[None], sr).sum().backward()
    assert torch.isfinite(xt.grad).all() and xt.grad.abs().sum() > 0


def test_intensity_mse():
    assert Fm.intensity_mse([1.0, 2.0, 3.0], [1.0, 0.0, 6.0]) == pytest.approx((0 + 4 + 9) / 3)
    with pytest.raises(ValueError):
        Fm.intensity_mse([1.0], [1.0, 2.0])
