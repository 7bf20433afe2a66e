"""KID (unbiased MMD^2, cubic polynomial kernel) and FD_inf, against independent expectations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from soundctm.metrics import functional as F


def _kid_reference_loop(x: np.ndarray, y: np.ndarray) -> float:
    """Binkowski et al. 2018 eq. for the unbiased MMD^2, written out pair by pair."""
    d = x.shape[1]

    def k(a, b):
        return (sum(float(ai) * float(bi) for ai, bi in zip(a, b)) / d + 1.0) ** 3

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_kid_matches_a_direct_pairwise_loop():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(7, 3)), rng.normal(0.5, 1.3, size=(5, 3))
    expected = _kid_reference_loop(x, y)
    assert F.kid(x, y) == pytest.approx(expected, rel=1e-12)
    # the blocked accumulation (blocks smaller than the sets) gives the same number
    assert F.mmd2_unbiased(x, y, block=2) == pytest.approx(expected, rel=1e-12)
    assert F.polynomial_kernel(x[:1], y[:1])[0, 0] == pytest.approx((x[0] @ y[0] / 3 + 1) ** 3)


def test_kid_of_two_samples_of_one_gaussian_is_zero_on_average():
    """Unbiased: the mean over seeds is 0 within its standard error, and single values go negative;
    the biased (V-statistic) estimate of the same samples is clearly positive."""
    vals, biased = [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        x, y = rng.normal(size=(150, 8)), rng.normal(size=(120, 8))
        vals.append(F.kid(x, y))
        kxx, kyy = F.polynomial_kernel(x, x).mean(), F.polynomial_kernel(y, y).mean()
        biased.append(kxx + kyy - 2 * F.polynomial_kernel(x, y).mean())
    vals = np.array(vals)
    sem = vals.std(ddof=1) / np.sqrt(len(vals))
    assert abs(vals.mean()) < 3 * sem, (vals.mean(), sem)
    assert (vals < 0).any() and (vals > 0).any()
    assert np.mean(biased) > 10 * sem
    # a shifted distribution is far above the noise
    rng = np.random.default_rng(0)
    assert F.kid(rng.normal(size=(150, 8)), rng.normal(0.5, 1.0, size=(120, 8))) > 20 * sem


def test_kid_subsets_estimate_the_same_quantity():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(600, 4)), rng.normal(0.3, 1.0, size=(500, 4))
    exact = F.kid(x, y)
    sub = F.kid(x, y, subsets=50, subset_size=200, seed=0)
    assert sub == pytest.approx(exact, rel=0.15)
    assert F.kid(x, y, subsets=5, subset_size=200, seed=0) == F.kid(x, y, subsets=5, subset_size=200, seed=0)
    with pytest.raises(ValueError):
        F.kid(x[:1], y)


def test_fd_infinity_removes_the_small_sample_bias_on_gaussians():
    """gen ~ N(0, I_d) against exact reference statistics N(m 1, s^2 I): the true FD is
    d m^2 + d (1 - s)^2. FD of n samples is biased upward (~c/n); FD_inf is not."""
    d, m, s, n = 16, 0.1, 1.5, 500
    true = d * m**2 + d * (1 - s) ** 2
    mu, sigma = np.full(d, m), np.eye(d) * s**2
    fd_n, fd_inf = [], []
    for seed in range(20):
        x = np.random.default_rng(seed).normal(size=(n, d))
        fd_n.append(F.frechet_distance(*F.stats(x), mu, sigma))
        fd_inf.append(F.fd_infinity(x, mu, sigma, seed=seed))
    fd_n, fd_inf = np.array(fd_n) - true, np.array(fd_inf) - true
    sem_n = fd_n.std(ddof=1) / np.sqrt(len(fd_n))
    sem_inf = fd_inf.std(ddof=1) / np.sqrt(len(fd_inf))
    assert fd_n.mean() > 4 * sem_n  # the plain FD's bias is real at this n
    assert abs(fd_inf.mean()) < 3 * sem_inf, (fd_inf.mean(), sem_inf)
    assert abs(fd_inf.mean()) < 0.3 * fd_n.mean()


def test_fd_infinity_by_file_and_its_fit():
    rng = np.random.default_rng(0)
    frames = np.full(100, 4)
    x = rng.normal(size=(400, 6))
    mu, sigma = np.zeros(6), np.eye(6)
    value, fit = F.fd_infinity(x, mu, sigma, frames=frames, return_fit=True)
    assert fit["n"][-1] == 100 and fit["n"][0] == 20 and len(fit["n"]) == 15
    # the largest subset is the whole set: its FD is the plain FD
    assert fit["fd"][-1] == pytest.approx(F.frechet_distance(*F.stats(x), mu, sigma))
    assert value == F.fd_infinity(x, mu, sigma, frames=frames)  # deterministic
    with pytest.raises(ValueError, match="frames sum"):
        F.fd_infinity(x, mu, sigma, frames=np.full(10, 4))


def test_evaluate_arrays_exposes_kid_and_fd_inf():
    from soundctm.metrics.evaluate import evaluate_arrays
    from soundctm.metrics.indomain import LogMelEmbedder

    rng = np.random.default_rng(0)
    gen = [rng.normal(size=16000).astype(np.float32) * 0.1 for _ in range(12)]
    ref = [rng.normal(size=16000).astype(np.float32) * 0.2 for _ in range(10)]
    emb = LogMelEmbedder()
    res = evaluate_arrays(gen, ref, None, 16000, ("fd", "kid", "fd_inf"), {"fd": emb, "kid": emb, "fd_inf": emb})
    g, r = emb.embed(gen, 16000), emb.embed(ref, 16000)
    assert res["KID[logmel]"] == pytest.approx(F.kid(g["embeddings"], r["embeddings"]), rel=1e-9)
    mu, sigma = F.stats(r["embeddings"])
    assert res["FD_inf[logmel]"] == pytest.approx(
        F.fd_infinity(g["embeddings"], mu, sigma, frames=g["frames"]), rel=1e-9
    )
    assert res["KID[logmel]"] > 0 and np.isfinite(res["FD_inf[logmel]"])
    details = res["provenance"]["details"]
    assert "all pairs" in details["KID[logmel]"]["estimator"] and len(details["FD_inf[logmel]"]["n"]) >= 2
