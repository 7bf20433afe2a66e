"""Deciding claims on intervals and margins, and the trivial-baseline self-test of each quality claim.

`decide(claim, dists, seconds)` takes the joint bootstrap samples of every row's metrics (see
`stats.py`) and returns a `Verdict`: the estimate, its 95 % interval, the margin, SUPPORTED or not.
`check(claim, ...)` also decides `claim.substituted()` (the decoded-zeros row in place of the
claim's subject): a quality claim whose self-test comes out SUPPORTED is reported as BROKEN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from soundctm.experiments.spec import Claim
from soundctm.experiments.stats import LOWER_IS_BETTER, Dist, interval

__all__ = ["Verdict", "decide", "check", "quality_q"]


@dataclass(frozen=True)
class Verdict:
    claim: str
    text: str
    supported: bool
    estimate: float
    lo: float
    hi: float
    margin: float
    detail: str
    self_test: Verdict | None = None

    @property
    def broken(self) -> bool:
        return self.self_test is not None and self.self_test.supported

    @property
    def label(self) -> str:
        if self.broken:
            return "BROKEN (the trivial baseline passes it)"
        return "SUPPORTED" if self.supported else "NOT SUPPORTED"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["label"], d["broken"] = self.label, self.broken
        return d


def quality_q(m: str, dists: dict[str, dict[str, Dist]], row: str, zeros: str = "zeros",
              codec: str = "vae-recon") -> Dist:
    """q = (M(row) - M(zeros)) / (M(codec) - M(zeros)): 0 at the trivial baseline, 1 at the codec."""
    r, z, c = dists[row][m], dists[zeros][m], dists[codec][m]
    return Dist((r.value - z.value) / (c.value - z.value), (r.samples - z.samples) / (c.samples - z.samples))


def decide(c: Claim, dists: dict[str, dict[str, Dist]], seconds: dict[str, list[float]] | None = None,
           memory: dict[str, list[float]] | None = None) -> Verdict:
    if c.kind == "heavier":
        ma, mb = (memory or {}).get(c.a), (memory or {}).get(c.b)
        if not ma or not mb:
            raise ValueError(f"claim {c.id}: rows {c.a!r} and {c.b!r} need training-memory measurements")
        worst = min(ma) / max(mb)
        est = float(np.mean(ma) / np.mean(mb))
        return Verdict(c.id, c.text, worst >= c.margin, est, worst, float(max(ma) / min(mb)), c.margin,
                       f"memory ratio {est:.2f}x (least favourable pairing of training seeds {worst:.2f}x; "
                       f"threshold {c.margin:g}x; {c.a} {np.mean(ma):.0f} MiB, {c.b} {np.mean(mb):.0f} MiB)")
    if c.kind == "faster":
        ta, tb = seconds.get(c.a), seconds.get(c.b)
        if not ta or not tb:
            raise ValueError(f"claim {c.id}: rows {c.a!r} and {c.b!r} need timings")
        worst = min(tb) / max(ta)  # the least favourable pairing of the repeats
        est = float(np.median(tb) / np.median(ta))
        return Verdict(c.id, c.text, worst >= c.margin, est, worst, float(max(tb) / min(ta)), c.margin,
                       f"speed-up {est:.1f}x (least favourable pairing of repeats {worst:.1f}x; "
                       f"threshold {c.margin:g}x; {c.b} {np.median(tb):.4f} s, {c.a} {np.median(ta):.4f} s per sample)")
    m = c.metric
    if c.kind == "improves":
        da, db = dists[c.a][m], dists[c.b][m]
        sign = 1.0 if LOWER_IS_BETTER[m] else -1.0
        diff = sign * (da.samples - db.samples)
        est = sign * (da.value - db.value)
        lo, hi = interval(diff)
        return Verdict(c.id, c.text, lo > c.margin, est, lo, hi, c.margin,
                       f"{m}: {c.a} {da.value:.4g} -> {c.b} {db.value:.4g}; improvement {est:+.4g} "
                       f"[{lo:+.4g}, {hi:+.4g}] (needs the interval above {c.margin:g})")
    if c.kind in ("close", "comparable"):
        qa, qb = quality_q(m, dists, c.a), quality_q(m, dists, c.b)
        diff = qa.samples - qb.samples
        est = qa.value - qb.value
        lo, hi = interval(diff)
        ok = lo >= -c.margin and (c.kind == "close" or hi <= c.margin)
        need = f"the lower end >= -{c.margin:g}" if c.kind == "close" else f"the interval inside ±{c.margin:g}"
        return Verdict(c.id, c.text, bool(ok), est, lo, hi, c.margin,
                       f"{m} on the q scale (0 = decoded zeros, 1 = VAE reconstruction): q({c.a}) {qa.value:.3f}, "
                       f"q({c.b}) {qb.value:.3f}; difference {est:+.3f} [{lo:+.3f}, {hi:+.3f}] (needs {need})")
    if c.kind in ("separated", "ordered"):
        da, db = dists[c.a][m], dists[c.b][m]
        better = (lambda x, y: x < y) if LOWER_IS_BETTER[m] else (lambda x, y: x > y)
        (alo, ahi), (blo, bhi) = da.interval(), db.interval()
        if c.kind == "separated":
            ok = better(ahi, blo) if LOWER_IS_BETTER[m] else better(alo, bhi)
            rel = "<<" if LOWER_IS_BETTER[m] else ">>"
        else:
            gap = (db.value - da.value) if LOWER_IS_BETTER[m] else (da.value - db.value)
            ok = gap > -c.margin if c.margin > 0 else gap > 0  # "a better than b" (within margin)
            rel = "<" if LOWER_IS_BETTER[m] else ">"
        return Verdict(c.id, c.text, bool(ok), da.value - db.value, alo, ahi, c.margin,
                       f"{m}: {c.a} {da.value:.4g} [{alo:.4g}, {ahi:.4g}] {rel} {c.b} {db.value:.4g} "
                       f"[{blo:.4g}, {bhi:.4g}]")
    raise ValueError(f"unknown claim kind {c.kind!r}")


def check(c: Claim, dists: dict[str, dict[str, Dist]], seconds: dict[str, list[float]] | None = None,
          memory: dict[str, list[float]] | None = None) -> Verdict:
    """Decide `c` and, for a quality claim, its trivial-baseline self-test."""
    v = decide(c, dists, seconds, memory)
    if not c.quality:
        return v
    st = decide(c.substituted(), dists, seconds, memory)
    return replace(v, self_test=st)
