"""Metric values with bootstrap intervals over evaluation units (test clips, each with its captions).

Every row of a table is scored on the same units, and the bootstrap draws ONE set of unit
resamples (`Bootstrap.draws`) that every row uses, so the rows' bootstrap samples are joint:
differences between rows and the normalised quality q of the claims get their intervals from the
same draws (a paired bootstrap). The generated set is resampled by unit (all items of a drawn unit:
its captions x samples); the reference set (the real test clips) stays fixed. Every distribution is
bias-corrected (`Dist.bias_corrected`): its samples are shifted so that their mean is the point value.

Definitions are those of `soundctm.metrics.functional` (the point values call it); the bootstrap
recomputes them from per-unit sufficient statistics:
  FD   Fréchet distance of all frame embeddings (mean and covariance from per-unit sums);
  KID  unbiased MMD^2 of clip embeddings (mean of a clip's frames), cubic polynomial kernel
       k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018), against the reference clips;
  KL   stable-audio-metrics KL(gen || ref) of per-clip class distributions, each generated clip
       paired with the real clip of its unit (mean over clips);
  CLAP mean cosine between a clip's audio embedding and its caption's text embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import xlogy

from soundctm.metrics import functional as Fm

__all__ = ["Bootstrap", "Dist", "interval", "ItemScores", "LOWER_IS_BETTER", "metric_dists", "kid_unbiased",
           "kl_per_item", "item_mean_dist"]

LOWER_IS_BETTER = {"fd": True, "kid": True, "kl": True, "clap": False, "mel": True, "lpaps": True,
                   "intensity-mse": True, "lsd": True, "fidelity": True}
LEVEL = 0.95


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap samples."""
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [a, 1.0 - a])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Bootstrap:
    """n_boot resamples (with replacement) of n_units units, from one seed."""

    n_units: int
    n_boot: int = 200
    seed: int = 0

    def counts(self) -> np.ndarray:
        """[n_boot, n_units] multiplicity of each unit in each resample."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.n_units, self.n_boot]))
        idx = rng.integers(0, self.n_units, size=(self.n_boot, self.n_units))
        counts = np.zeros((self.n_boot, self.n_units), np.int64)
        for b in range(self.n_boot):
            np.add.at(counts[b], idx[b], 1)
        return counts


@dataclass(frozen=True)
class Dist:
    """A metric value and its bootstrap samples (aligned across rows of one table)."""

    value: float
    samples: np.ndarray  # [n_boot]

    def interval(self, level: float = LEVEL) -> tuple[float, float]:
        return interval(self.samples, level)

    def half_width(self, level: float = LEVEL) -> float:
        lo, hi = self.interval(level)
        return (hi - lo) / 2.0

    @classmethod
    def bias_corrected(cls, value: float, samples: np.ndarray) -> Dist:
        """`value` with its bootstrap samples shifted by their bias estimate mean(samples) - value
        (Efron & Tibshirani 1993, section 10.2), so the percentile interval is centred on the estimate.
        FD and KID of a resample (test clips drawn with replacement, so some appear twice) are biased
        upward: uncorrected, the interval of a row against itself can lie entirely above its value."""
        samples = np.asarray(samples, dtype=np.float64)
        return cls(float(value), samples - (samples.mean() - float(value)))

    def to_dict(self) -> dict:
        lo, hi = self.interval()
        return {"value": self.value, "lo": lo, "hi": hi, "level": LEVEL, "n_boot": int(len(self.samples))}


@dataclass
class ItemScores:
    """What the metrics need of one row, item by item (an item = one clip scored against one caption).

    unit [N]: evaluation unit of item i; frames [F, D] and frame_counts [N]: frame embeddings;
    probs [N, K]: class distributions; clap [N] cosine to the item's caption (or None);
    pair [N]: the unit whose real clip item i's KL pairs with (None: its own unit).
    """

    unit: np.ndarray
    frames: np.ndarray
    frame_counts: np.ndarray
    probs: np.ndarray | None = None
    clap: np.ndarray | None = None
    pair: np.ndarray | None = None

    @property
    def paired_units(self) -> np.ndarray:
        return self.unit if self.pair is None else self.pair

    def subset(self, mask: np.ndarray) -> ItemScores:
        """The items where `mask` [N] is True (their frames with them)."""
        mask = np.asarray(mask, bool)
        frame_mask = np.repeat(mask, self.frame_counts)
        pick = (lambda a: None if a is None else a[mask])
        return ItemScores(self.unit[mask], self.frames[frame_mask], self.frame_counts[mask], pick(self.probs),
                          pick(self.clap), pick(self.pair))

    def clip_embeddings(self) -> np.ndarray:
        starts = np.concatenate([[0], np.cumsum(self.frame_counts)[:-1]])
        return np.add.reduceat(self.frames, starts, axis=0) / self.frame_counts[:, None]


def kl_per_item(p_gen: np.ndarray, p_ref: np.ndarray, eps: float = Fm.KL_EPS) -> np.ndarray:
    """Per clip KL(gen || ref) as `functional.kl_passt_sam` (whose value is the mean of these)."""
    return (xlogy(p_gen, p_gen) - p_gen * np.log(p_ref + eps)).sum(axis=1)


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def kid_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between samples x [n, d] and y [m, d] with the cubic polynomial kernel."""
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    n, m = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2.0 * kxy.mean())


def _unit_sums(values: np.ndarray, unit: np.ndarray, n_units: int) -> np.ndarray:
    out = np.zeros((n_units,) + values.shape[1:], np.float64)
    np.add.at(out, unit, values)
    return out


def _mean_dist(per_item: np.ndarray, unit: np.ndarray, counts: np.ndarray) -> Dist:
    n_units = counts.shape[1]
    s = _unit_sums(per_item.astype(np.float64), unit, n_units)
    n = _unit_sums(np.ones(len(per_item)), unit, n_units)
    return Dist.bias_corrected(float(per_item.mean()), (counts @ s) / (counts @ n))


def _fd_dist(g: ItemScores, ref_frames: np.ndarray, counts: np.ndarray) -> Dist:
    mu_r, sig_r = Fm.stats(ref_frames)
    mu_g, sig_g = Fm.stats(g.frames)
    value = Fm.frechet_distance(mu_g, sig_g, mu_r, sig_r)
    n_units = counts.shape[1]
    frame_unit = np.repeat(g.unit, g.frame_counts)
    f = g.frames.astype(np.float64)
    s1 = _unit_sums(f, frame_unit, n_units)  # [U, D]
    s2 = _unit_sums(np.einsum("fi,fj->fij", f, f), frame_unit, n_units)  # [U, D, D]
    nf = _unit_sums(np.ones(len(f)), frame_unit, n_units)
    out = np.empty(len(counts))
    for b, c in enumerate(counts):
        n = c @ nf
        mu = (c @ s1) / n
        cov = (np.tensordot(c, s2, axes=1) - n * np.outer(mu, mu)) / (n - 1)
        out[b] = Fm.frechet_distance(mu, cov, mu_r, sig_r)
    return Dist.bias_corrected(value, out)


def _kid_dist(g: ItemScores, ref_clips: np.ndarray, counts: np.ndarray) -> Dist:
    x = g.clip_embeddings().astype(np.float64)
    y = ref_clips.astype(np.float64)
    value = kid_unbiased(x, y)
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    m = len(y)
    yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    by_unit = [np.flatnonzero(g.unit == u) for u in range(counts.shape[1])]
    out = np.empty(len(counts))
    for b, c in enumerate(counts):
        idx = np.concatenate([np.repeat(by_unit[u], k) for u, k in enumerate(c) if k])
        n = len(idx)
        sub = kxx[np.ix_(idx, idx)]
        out[b] = (sub.sum() - np.trace(sub)) / (n * (n - 1)) + yy - 2.0 * kxy[idx].mean()
    return Dist.bias_corrected(value, out)


def item_mean_dist(per_item: np.ndarray, unit: np.ndarray, boot: Bootstrap) -> Dist:
    """The mean of a per-item metric (one value per item, e.g. an application's intensity MSE or LSD) with
    its bootstrap over units, as CLAP's."""
    return _mean_dist(np.asarray(per_item, dtype=np.float64), np.asarray(unit), boot.counts())


def metric_dists(g: ItemScores, ref: ItemScores, metrics, boot: Bootstrap) -> dict[str, Dist]:
    """Bootstrap distributions of `metrics` ("fd", "kid", "kl", "clap") of row `g` against `ref`.

    `ref` holds one item per unit (the real clip of the unit, in unit order)."""
    counts = boot.counts()
    out: dict[str, Dist] = {}
    for m in metrics:
        if m == "fd":
            out[m] = _fd_dist(g, ref.frames, counts)
        elif m == "kid":
            out[m] = _kid_dist(g, ref.clip_embeddings(), counts)
        elif m == "kl":
            if g.probs is None or ref.probs is None:
                continue
            out[m] = _mean_dist(kl_per_item(g.probs, ref.probs[g.paired_units]), g.unit, counts)
        elif m == "clap":
            if g.clap is None:
                continue
            out[m] = _mean_dist(g.clap, g.unit, counts)
        else:
            raise ValueError(f"unknown metric family {m!r}; expected fd, kid, kl, clap")
    return out
