"""Metric formulas on arrays (no models). numpy/scipy in float64 unless stated.

Definitions follow /shared METRICS notes:
- `frechet_distance` / `stats`: FAD toolkits (frechet-audio-distance, stable-audio-metrics).
- `kid`: kernel inception distance (Binkowski et al. 2018), unbiased MMD^2 with the cubic
  polynomial kernel k(x, y) = (x.y / d + 1)^3: no small-sample bias (can be < 0).
- `fd_infinity`: FD extrapolated to infinitely many generated samples (Chong & Forsyth 2020):
  FD at several subset sizes N fitted linearly in 1/N, the intercept at 1/N = 0.
- `kl_passt_sam`: stable-audio-metrics, KL(gen || ref) with log(p_ref + 1e-6).
- `kl_audioldm`: audioldm_eval, KL(ref || gen) with log(p_gen + 1e-6).
- `inception_score`: audioldm_eval (seeded shuffle, splits, mean/std of exp(mean KL(p || p_split))).
- `clap_score`: mean cosine of paired, L2-normalised text/audio embeddings (no clamp).
- `lsd`: log-spectral distance of STFT power spectra.
- `lpaps`: LPIPS-style distance without learned weights (Iashin & Rahtu 2021), used as CLAP-LPAPS.
- `intensity_curve` / `intensity_mse`: App. C.3, Savitzky-Golay-smoothed frame RMS in dB.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from scipy.signal import savgol_coeffs, savgol_filter
from scipy.special import xlogy

__all__ = [
    "stats",
    "frechet_distance",
    "frechet_distance_from_embeddings",
    "polynomial_kernel",
    "mmd2_unbiased",
    "kid",
    "fd_infinity",
    "softmax",
    "kl_passt_sam",
    "kl_audioldm",
    "inception_score",
    "clap_score",
    "cosine_rows",
    "lsd",
    "lpaps",
    "intensity_curve",
    "intensity_curve_torch",
    "intensity_mse",
    "KL_EPS",
]

KL_EPS = 1e-6


# ----------------------------------------------------------------------------- Fréchet distance
def stats(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian statistics of a set of embeddings.

    embeddings: [F, D] (all frames of all files).
    Returns (mu [D], sigma [D, D]) with sigma = np.cov(rowvar=False) (unbiased, ddof=1).
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be [F, D], got shape {e.shape}")
    if len(e) < 2:
        raise ValueError(f"need at least 2 embeddings for a covariance, got {len(e)}")
    if not np.isfinite(e).all():
        raise ValueError("embeddings contain NaN/Inf")
    return e.mean(axis=0), np.atleast_2d(np.cov(e, rowvar=False))


def _sqrtm(a: np.ndarray) -> np.ndarray:

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular-matrix warnings: we check finiteness ourselves
        out = linalg.sqrtm(a)
    if isinstance(out, tuple):  # older scipy with disp=False semantics
        out = out[0]
    return np.asarray(out)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    FD = |mu1 - mu2|^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr sqrtm(sigma1 sigma2).
    mu*: [D]; sigma*: [D, D] symmetric PSD (symmetrised here). When sqrtm of the product is
    not finite, `eps * I` is added to both covariances and it is retried. A negligible
    imaginary part of sqrtm is dropped; a large one (> 1e-3 on the diagonal) raises.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"mean vectors have different/invalid shapes {mu1.shape} vs {mu2.shape}")
    d = mu1.shape[0]
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"covariances must be [{d}, {d}], got {s1.shape} and {s2.shape}")
    for name, a in (("mu1", mu1), ("mu2", mu2), ("sigma1", s1), ("sigma2", s2)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN/Inf")
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)
    diff = mu1 - mu2

    covmean = _sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = _sqrtm((s1 + offset) @ (s2 + offset))
        if not np.isfinite(covmean).all():
            raise ValueError("sqrtm(sigma1 sigma2) is not finite even after adding eps*I")
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(np.diagonal(covmean).imag))
        if imag > 1e-3:
            raise ValueError(f"sqrtm(sigma1 sigma2) has a large imaginary component ({imag:.3g})")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def frechet_distance_from_embeddings(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """FD between two embedding sets a: [F1, D], b: [F2, D]."""
    return frechet_distance(*stats(a), *stats(b), eps=eps)


# ----------------------------------------------------------------------------- KID / FD-infinity
def polynomial_kernel(a: np.ndarray, b: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """k(x, y) = (x.y / d + coef0)^degree for all rows of a: [n, d], b: [m, d] -> [n, m]."""
    d = a.shape[1]
    return (a @ b.T / d + coef0) ** degree


def mmd2_unbiased(
    a: np.ndarray, b: np.ndarray, degree: int = 3, coef0: float = 1.0, block: int = 2048
) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) with `polynomial_kernel`:

        1/(n(n-1)) sum_{i!=j} k(a_i, a_j) + 1/(m(m-1)) sum_{i!=j} k(b_i, b_j) - 2/(nm) sum_{i,j} k(a_i, b_j).

    a: [n, d], b: [m, d] (n, m >= 2). Computed in blocks of `block` rows (memory O(block^2)).
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two [n, d] sets with the same d, got {a.shape} and {b.shape}")
    n, m = len(a), len(b)
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 samples per set, got {n} and {m}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("embeddings contain NaN/Inf")

    def total(x, y, same):
        s = 0.0
        for i in range(0, len(x), block):
            for j in range(0, len(y), block):
                k = polynomial_kernel(x[i : i + block], y[j : j + block], degree, coef0)
                s += k.sum()
                if same and i == j:
                    s -= np.trace(k)
        return s

    kxx = total(a, a, True) / (n * (n - 1))
    kyy = total(b, b, True) / (m * (m - 1))
    kxy = total(a, b, False) / (n * m)
    return float(kxx + kyy - 2.0 * kxy)


def kid(
    gen: np.ndarray,
    ref: np.ndarray,
    subsets: int | None = None,
    subset_size: int = 1000,
    seed: int = 0,
    degree: int = 3,
    coef0: float = 1.0,
) -> float:
    """Kernel inception distance: unbiased MMD^2 of the embeddings, cubic polynomial kernel
    k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018).

    gen: [n, d], ref: [m, d] (frame embeddings, as for FD). subsets None: the exact estimator over
    all rows (deterministic). subsets = S: the mean over S random subsets of min(subset_size, n, m)
    rows of each set, drawn without replacement with `np.random.default_rng(seed)` (the
    torch-fidelity / Binkowski protocol; each term is unbiased, so is the mean).
    The estimate is unbiased for every n, m >= 2 and can be slightly negative when the two
    distributions are equal.
    """
    g = np.asarray(gen, np.float64)
    r = np.asarray(ref, np.float64)
    if subsets is None:
        return mmd2_unbiased(g, r, degree, coef0)
    rng = np.random.default_rng(seed)
    k = min(subset_size, len(g), len(r))
    vals = [
        mmd2_unbiased(g[rng.choice(len(g), k, replace=False)], r[rng.choice(len(r), k, replace=False)], degree, coef0)
        for _ in range(int(subsets))
    ]
    return float(np.mean(vals))


def fd_infinity(
    gen: np.ndarray,
    ref_mu: np.ndarray,
    ref_sigma: np.ndarray,
    frames: np.ndarray | None = None,
    num_points: int = 15,
    min_fraction: float = 0.2,
    seed: int = 0,
    return_fit: bool = False,
):
    """FD_inf (Chong & Forsyth 2020, "Effectively unbiased FID and Inception Score and where to find
    them"): the FD of N generated samples against fixed reference statistics has a bias ~ c / N;
    compute FD at `num_points` subset sizes N evenly spaced in [min_fraction * n, n], fit
    FD_N = FD_inf + c / N by least squares, report the intercept FD_inf.

    gen: [F, D] generated embeddings (all frames of all files); ref_mu [D], ref_sigma [D, D].
    frames: per-file frame counts [n_files] (sum F): subsets are then drawn by file (the unit of
      sampling; frames of one clip are not independent) and N counts files; None: by row.
    Subsets are drawn without replacement from `np.random.default_rng(seed)`; the largest N is the
    whole set. Deterministic. return_fit: also return {"n": [...], "fd": [...], "slope": c}.
    """
    e = np.asarray(gen, np.float64)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be [F, D], got shape {e.shape}")
    if frames is None:
        groups = [np.array([i]) for i in range(len(e))]
    else:
        frames = np.asarray(frames, np.int64)
        if frames.sum() != len(e):
            raise ValueError(f"frames sum to {int(frames.sum())}, embeddings have {len(e)} rows")
        ends = np.cumsum(frames)
        groups = [np.arange(s, t) for s, t in zip(ends - frames, ends)]
    n = len(groups)
    lo = max(2, int(math.ceil(min_fraction * n)))
    ns = np.unique(np.linspace(lo, n, num_points).round().astype(int))
    if len(ns) < 2:
        raise ValueError(f"FD_inf needs at least 2 distinct subset sizes; {n} samples give {ns.tolist()}")
    rng = np.random.default_rng(seed)
    fds = []
    for k in ns:
        pick = np.arange(n) if k == n else np.sort(rng.choice(n, k, replace=False))
        rows = np.concatenate([groups[i] for i in pick])
        mu, sigma = stats(e[rows])
        fds.append(frechet_distance(mu, sigma, ref_mu, ref_sigma))
    x = np.stack([np.ones(len(ns)), 1.0 / ns], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(x, np.array(fds), rcond=None)
    if return_fit:
        return float(intercept), {"n": ns.tolist(), "fd": [float(f) for f in fds], "slope": float(slope)}
    return float(intercept)


# ----------------------------------------------------------------------------- class distributions
def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64. logits: [..., K] -> probabilities [..., K]."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def _check_probs(p: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 1:
        p = p[None]
    if p.ndim != 2:
        raise ValueError(f"{name} must be [N, K] probabilities, got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError(
            f"{name} rows must sum to 1 (got sums in [{p.sum(1).min():.4g}, {p.sum(1).max():.4g}])"
        )
    return p


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return xlogy(x, y)


def _paired(p: np.ndarray, q: np.ndarray, names: tuple[str, str]) -> None:
    if p.shape != q.shape:
        raise ValueError(f"{names[0]} {p.shape} and {names[1]} {q.shape} must be paired clip by clip")


def kl_passt_sam(p_gen: np.ndarray, p_ref: np.ndarray, eps: float = KL_EPS) -> float:
    """stable-audio-metrics KL: mean over paired clips of KL(gen || ref).

    p_gen, p_ref: [N, K] per-clip class distributions (row i of both = the same id).
    Per clip: sum_k p_gen (log p_gen - log(p_ref + eps)), with 0 log 0 = 0.
    """
    pg, pr = _check_probs(p_gen, "p_gen"), _check_probs(p_ref, "p_ref")
    _paired(pg, pr, ("p_gen", "p_ref"))
    per = (_xlogy(pg, pg) - pg * np.log(pr + eps)).sum(axis=1)
    return float(per.mean())


def kl_audioldm(p_ref: np.ndarray, p_gen: np.ndarray, eps: float = KL_EPS) -> float:
    """audioldm_eval KL: mean over paired clips of KL(ref || gen).

    p_ref, p_gen: [N, K]. Per clip: sum_k p_ref (log p_ref - log(p_gen + eps)), with 0 log 0 = 0.
    """
    pr, pg = _check_probs(p_ref, "p_ref"), _check_probs(p_gen, "p_gen")
    _paired(pr, pg, ("p_ref", "p_gen"))
    per = (_xlogy(pr, pr) - pr * np.log(pg + eps)).sum(axis=1)
    return float(per.mean())


def inception_score(probs: np.ndarray, splits: int = 10, seed: int = 2020, shuffle: bool = True):
    """Inception score as in audioldm_eval.

    probs: [N, K] class distributions of the generated clips. The rows are permuted with
    `np.random.RandomState(seed)` (if `shuffle`), cut into `splits` contiguous chunks
    [i N // splits, (i+1) N // splits), and per chunk IS = exp(mean_x KL(p(y|x) || p_chunk(y))).
    Returns (mean, std) over chunks (std with ddof=0).
    """
    p = _check_probs(probs, "probs")
    n = len(p)
    if splits < 1 or n < splits:
        raise ValueError(f"inception score needs at least `splits`={splits} clips, got {n}")
    if shuffle:
        p = p[np.random.RandomState(seed).permutation(n)]
    scores = []
    for i in range(splits):
        chunk = p[i * n // splits : (i + 1) * n // splits]
        q = chunk.mean(axis=0, keepdims=True)
        kl = (_xlogy(chunk, chunk) - _xlogy(chunk, np.broadcast_to(q, chunk.shape))).sum(axis=1)
        scores.append(math.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


# ----------------------------------------------------------------------------- CLAP score
def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of a, b: [N, D] -> [N]. A zero row has cosine 0 with anything."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"embeddings must be paired [N, D] arrays, got {a.shape} and {b.shape}")
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    a = np.divide(a, na, out=np.zeros_like(a), where=na > 0)
    b = np.divide(b, nb, out=np.zeros_like(b), where=nb > 0)
    return (a * b).sum(axis=1)


def clap_score(text_emb: np.ndarray, audio_emb: np.ndarray) -> float:
    """Mean cosine similarity of paired text and audio embeddings ([N, D] each), no clamp."""
    return float(cosine_rows(text_emb, audio_emb).mean())


# ----------------------------------------------------------------------------- LSD
def _power_spectrogram(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """x: [N] -> |STFT|^2: [frames, n_fft // 2 + 1], periodic Hann window, centred (reflect pad)."""
    pad = n_fft // 2
    mode = "reflect" if len(x) > pad else "constant"
    x = np.pad(x, (pad, pad), mode=mode)
    n_frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    spec = np.fft.rfft(x[idx] * win, axis=-1)
    return spec.real**2 + spec.imag**2


def lsd(ref: np.ndarray, est: np.ndarray, n_fft: int = 2048, hop: int = 512, eps: float = 1e-10) -> float:
    """Log-spectral distance between two signals.

    ref, est: [N] (or [B, N]: the mean over clips is returned), same length.
    LSD = mean_frames sqrt( mean_freq (log10(P_ref + eps) - log10(P_est + eps))^2 ),
    P = |STFT|^2 with a periodic Hann window of n_fft, hop `hop`.
    """
    r = np.asarray(ref, dtype=np.float64)
    e = np.asarray(est, dtype=np.float64)
    if r.shape != e.shape:
        raise ValueError(f"lsd needs signals of equal shape, got {r.shape} and {e.shape}")
    if r.ndim == 1:
        r, e = r[None], e[None]
    if r.ndim != 2 or r.shape[1] == 0:
        raise ValueError(f"lsd expects [N] or [B, N] signals, got {r.shape}")
    if not (np.isfinite(r).all() and np.isfinite(e).all()):
        raise ValueError("lsd: signals contain NaN/Inf")
    vals = []
    for a, b in zip(r, e):
        la = np.log10(_power_spectrogram(a, n_fft, hop) + eps)
        lb = np.log10(_power_spectrogram(b, n_fft, hop) + eps)
        vals.append(np.sqrt(((la - lb) ** 2).mean(axis=1)).mean())
    return float(np.mean(vals))


# ----------------------------------------------------------------------------- LPAPS
def lpaps(feats_a: Sequence, feats_b: Sequence, eps: float = 1e-10):
    """LPIPS-style perceptual distance without learned weights (CLAP-LPAPS, Manor & Michaeli 2024).

    feats_a, feats_b: lists of per-stage feature tensors [B, C, *spatial] (same shapes stage by
    stage). Each stage is normalised to unit L2 norm along the channel axis (dim 1); the squared
    differences are summed over channels and averaged over the spatial positions; the stages are
    summed. Returns a [B] tensor (per-clip distance; each stage contributes a value in [0, 4]).
    """

    if len(feats_a) != len(feats_b) or len(feats_a) == 0:
        raise ValueError(f"need the same non-zero number of stages, got {len(feats_a)} and {len(feats_b)}")
    total = None
    for i, (fa, fb) in enumerate(zip(feats_a, feats_b)):
        fa, fb = torch.as_tensor(fa), torch.as_tensor(fb)
        if fa.shape != fb.shape or fa.dim() < 2:
            raise ValueError(
                f"stage {i}: shapes {tuple(fa.shape)} and {tuple(fb.shape)} differ or lack [B, C]"
            )
        na = fa / (fa.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
        nb = fb / (fb.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
        d = (na - nb).pow(2).sum(dim=1)  # [B, *spatial]
        d = d.reshape(d.shape[0], -1).mean(dim=1)
        total = d if total is None else total + d
    return total


# ----------------------------------------------------------------------------- intensity (App. C.3)
def _savgol_window(n_frames: int, sample_rate: int, hop: int, polyorder: int) -> int:
    w = max(int(round(sample_rate / hop)), 1)  # frames in 1 s
    w = min(w, n_frames)
    if w % 2 == 0:
        w -= 1
    return max(w, 1)


def intensity_curve(
    wav: np.ndarray,
    sample_rate: int,
    frame: int = 1024,
    hop: int = 256,
    floor_db: float = -100.0,
    polyorder: int = 2,
) -> np.ndarray:
    """Smoothed dB intensity curve f(x) = w * 20 log10(RMS(x)) (App. C.3).

    wav: [N] (or [B, N]). Frame RMS over `frame` samples every `hop` samples (frames start at
    0, the tail is zero-padded so every sample is covered), 20 log10(max(RMS, 10^(floor_db/20)))
    (silence -> floor_db, never -inf), then a Savitzky-Golay filter (order `polyorder`,
    window = the odd number of frames closest to 1 s, shrunk for short clips; edges mode
    "nearest"). Returns [F] (or [B, F]) in dB.
    """

    x = np.asarray(wav, dtype=np.float64)
    single = x.ndim == 1
    if single:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"intensity_curve expects [N] or [B, N], got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("intensity_curve: waveform contains NaN/Inf")
    n = x.shape[1]
    n_frames = max(1, 1 + math.ceil(max(n - frame, 0) / hop))
    total = (n_frames - 1) * hop + frame
    x = np.pad(x, ((0, 0), (0, total - n)))
    idx = np.arange(frame)[None, :] + hop * np.arange(n_frames)[:, None]
    rms = np.sqrt((x[:, idx] ** 2).mean(axis=-1))  # [B, F]
    floor = 10.0 ** (floor_db / 20.0)
    db = 20.0 * np.log10(np.maximum(rms, floor))
    w = _savgol_window(n_frames, sample_rate, hop, polyorder)
    if w > polyorder:
        db = savgol_filter(db, w, polyorder, axis=-1, mode="nearest")
    return db[0] if single else db


def intensity_curve_torch(
    wav, sample_rate: int, frame: int = 1024, hop: int = 256, floor_db: float = -100.0, polyorder: int = 2
):
    """Differentiable twin of `intensity_curve` for loss-based guidance (Alg. 3).

    wav: [B, N] tensor -> [B, F] dB curve, equal to `intensity_curve` up to float precision.
    """

    if wav.dim() != 2:
        raise ValueError(f"intensity_curve_torch expects [B, N], got {tuple(wav.shape)}")
    n = wav.shape[1]
    n_frames = max(1, 1 + math.ceil(max(n - frame, 0) / hop))
    total = (n_frames - 1) * hop + frame
    x = F.pad(wav, (0, total - n))
    frames = x.unfold(1, frame, hop)  # [B, F, frame]
    rms = frames.pow(2).mean(-1).clamp_min(10.0 ** (2 * floor_db / 20.0)).sqrt()
    db = 20.0 * torch.log10(rms)
    w = _savgol_window(n_frames, sample_rate, hop, polyorder)
    if w > polyorder:
        k = torch.as_tensor(savgol_coeffs(w, polyorder, use="dot"), dtype=db.dtype, device=db.device)
        half = w // 2
        padded = F.pad(db[:, None], (half, half), mode="replicate")  # == scipy mode="nearest"
        db = F.conv1d(padded, k.view(1, 1, -1))[:, 0]
    return db


def intensity_mse(curve: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error (dB^2) between an intensity curve and a target curve of equal shape."""
    c = np.asarray(curve, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if c.shape != t.shape:
        raise ValueError(f"intensity curve {c.shape} and target {t.shape} differ in shape")
    return float(((c - t) ** 2).mean())
