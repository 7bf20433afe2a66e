"""Paired distances: how far apart two rows' samples of the SAME items are (same z_T, same caption).

A row with source "pair" (`Row.pair = (a, b)`, see `pair_row`) is scored by a per-item distance between
row a's audio of item i and row b's audio of item i; its mean is bootstrapped over test clips exactly as
the CLAP score is (`stats.item_mean_dist`), so claims between pair rows get paired intervals, and the
spread over items (the paper's "mean ± std") comes with it (`PairDist.std`).

Metric families (`PAIR_METRICS`; both lower-is-better, `stats.LOWER_IS_BETTER`):

    "lpaps"  CLAP-LPAPS (Manor & Michaeli 2024, after LPIPS without learned weights): the CLAP audio
             tower's activations at its 4 stages, each normalised to unit L2 norm along one axis, the
             squared differences summed over that axis and averaged over the others, the 4 stages summed
             (`metrics.functional.lpaps`; each stage lies in [0, 4], the total in [0, 16]).
             tiny tier (`TinyClapStages`): the tiny CLAP's audio tower (`nn.text.TinyAudioEncoder`: scaled
               log-mel -> 4 conv blocks); stages = the outputs of its three GELUs and of its last conv,
               [B, 128, frames_k]; normalised along the 128 channels at each frame (LPIPS), averaged over
               frames.
             paper tier (`LaionClapStages`): LAION-CLAP's HTSAT audio tower (the CLAP score's model, the
               `laion-clap` embedder) on the toolkit's input (48 kHz mono, repeat-padded to 10 s, no peak
               normalisation); stages = the 4 Swin stages' outputs [B, L_k, C_k]. axis "toolkit" (default):
               as AudioEditingCode/evals/lpaps.py computes it on those [B, L, C] outputs, normalised along
               dim 1, which there is the token axis, squared differences summed over tokens and averaged
               over channels; axis "channels": LPIPS's channel normalisation (the tokens' C axis).
    "mel"    mel distance: the mean over the 7 DAC scales (windows 32 ... 2048, hop window / 4; 5 ... 320 mel
             bands) of the mean absolute difference of log10 mel magnitudes (clamped at 1e-5), `audio.log_mel`:
             the VAE's reconstruction metric (`train.vae.multiscale_mel_distance`), clip by clip.

Two clips of different lengths (a decoder's output may be a few samples longer than a real clip) are compared
over the shorter one's length, from the start. Per-item distances are cached in the artifact store
(`pair-<metric>-<hash>.npy`), keyed by both rows' artifact keys (their generation settings, models, units,
seeds, code) and the metric's network and this module's code.
Pair rows are computed in the driver process from the component rows' cached latents (`Runner.prepare`
builds those as ordinary rows, on Ray when it runs there); decoded audio is transient, `CHUNK` items at a time.

`trivial_pair(subject, name)`: the self-test partner of a claim about a pair row: decoded all-zero latents
against the subject's second row. It shares no content with its partner, so a claim that a system's pair is
far closer than another's must fail with it in place of the system's pair.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from soundctm.audio import log_mel, resample
from soundctm.experiments.artifacts import ARRAY, cached, settings_hash
from soundctm.experiments.context import ItemContext
from soundctm.experiments.sources import item_audio
from soundctm.experiments.spec import Row
from soundctm.experiments.stats import Bootstrap, Dist, item_mean_dist
from soundctm.metrics import functional as Fm
from soundctm.metrics.indomain import TinyClapEmbedder

__all__ = ["PAIR_METRICS", "CHUNK", "MEL_WINDOWS", "MEL_BINS", "PairDist", "pair_row", "trivial_pair",
           "mel_distance", "TinyClapStages", "LaionClapStages", "lpaps_network", "column", "pair_values",
           "pair_dists"]

PAIR_METRICS = {"lpaps": "CLAP-LPAPS", "mel": "mel distance"}
CHUNK = 32  # items decoded and compared at once
MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)  # DAC's multi-scale mel loss (`train.vae.DAC_MEL_WINDOWS`)
MEL_BINS = (5, 10, 20, 40, 80, 160, 320)
MEL_FLOOR = 1e-5


@dataclass(frozen=True)
class PairDist(Dist):
    """A pair row's mean distance, its bootstrap samples, and the standard deviation over items."""

    std: float = float("nan")

    def to_dict(self) -> dict:
        return {**super().to_dict(), "std": self.std}


def pair_row(name: str, a: Row, b: Row, *, label: str | None = None, paper=()) -> Row:
    """A row scored by the distance between row a's and row b's audio of the same items."""
    return Row(name, source="pair", pair=(a, b), label=label, paper=paper)


def trivial_pair(subject: Row, name: str = "zeros-pair", label: str | None = None) -> Row:
    """The self-test partner of pair row `subject`: decoded all-zero latents against its second row."""
    if subject.source != "pair":
        raise ValueError(f"row {subject.name!r} is not a pair row")
    b = subject.pair[1]
    return pair_row(name, Row("zeros", source="zeros"), b,
                    label=label or f"decoded all-zero latents vs {b.display} (trivial baseline)")


# ----------------------------------------------------------------------------------------------- distances
def mel_distance(a: torch.Tensor, b: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mean over the DAC scales of mean |log10 mel(a) - log10 mel(b)|. a, b: [B, N] or [B, 1, N] -> [B]."""
    a, b = a.reshape(a.shape[0], 1, -1).float(), b.reshape(b.shape[0], 1, -1).float()
    if a.shape != b.shape:
        raise ValueError(f"mel distance needs clips of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    total = a.new_zeros(a.shape[0])
    for w, m in zip(MEL_WINDOWS, MEL_BINS):
        total = total + (log_mel(a, sample_rate, w, m, eps=MEL_FLOOR)
                         - log_mel(b, sample_rate, w, m, eps=MEL_FLOOR)).abs().mean(dim=(1, 2))
    return total / len(MEL_WINDOWS)


class TinyClapStages:
    """The tiny CLAP's audio tower, stage by stage: waveforms -> 4 tensors [B, channels, frames_k]."""

    STAGES = (2, 5, 8, 9)  # indices in TinyAudioEncoder.net: the three GELUs and the last conv

    def __init__(self, clap):
        self.clap = clap.eval()
        self.audio = clap.audio
        self.sample_rate = int(clap.sample_rate)
        self.weights = clap.checksum()

    def settings(self) -> dict:
        return {"net": "tiny-clap-audio", "weights": self.weights, "stages": list(self.STAGES), "axis": "channels"}

    @torch.no_grad()
    def __call__(self, wavs: list[np.ndarray], sample_rate: int) -> list[torch.Tensor]:
        if int(sample_rate) != self.sample_rate:
            wavs = [resample(np.asarray(w, np.float32), sample_rate, self.sample_rate) for w in wavs]
        dev = next(self.audio.parameters()).device
        h = self.audio.features(torch.from_numpy(np.stack(wavs).astype(np.float32))[:, None].to(dev))
        out = []
        for i, layer in enumerate(self.audio.net):
            h = layer(h)
            if i in self.STAGES:
                out.append(h.float().cpu())
        return out


class LaionClapStages:
    """LAION-CLAP's audio tower, stage by stage (`ClapEmbedder.features`, no peak normalisation, as the
    toolkit feeds it): waveforms -> 4 Swin-stage outputs, [B, L_k, C_k] (axis "toolkit": normalised along
    dim 1 as the toolkit does) or [B, C_k, L_k] (axis "channels")."""

    def __init__(self, clap_embedder, axis: str = "toolkit"):
        if axis not in ("toolkit", "channels"):
            raise ValueError(f"axis must be 'toolkit' or 'channels', got {axis!r}")
        self.clap, self.axis = clap_embedder, axis

    def settings(self) -> dict:
        return {"net": "laion-clap-audio", "embedder": self.clap.settings(), "stages": "swin 1-4", "axis": self.axis}

    @torch.no_grad()
    def __call__(self, wavs: list[np.ndarray], sample_rate: int) -> list[torch.Tensor]:
        feats = self.clap.features(list(wavs), sample_rate, normalise=False)
        feats = [f.float().cpu() for f in feats]
        return feats if self.axis == "toolkit" else [f.transpose(1, 2) for f in feats]


def lpaps_network(comp):
    """The CLAP-LPAPS network of a tier's components: the audio tower of its CLAP embedder."""
    clap = comp.embedders.get("clap")
    if isinstance(clap, TinyClapEmbedder):
        return TinyClapStages(clap.clap)
    if clap is not None and hasattr(clap, "features"):
        return LaionClapStages(clap)
    raise ValueError("CLAP-LPAPS needs the tier's CLAP embedder ('clap': the tiny CLAP or LAION-CLAP), "
                     f"got {type(clap).__name__}")


def column(comp, metric: str) -> str:
    """Column name of a pair metric, with the network it is measured with: CLAP-LPAPS[tiny-clap]."""
    if metric == "lpaps":
        return f"{PAIR_METRICS[metric]}[{comp.embedders['clap'].tag}]"
    return PAIR_METRICS[metric]


# ----------------------------------------------------------------------------------------------- values
@functools.cache
def _code() -> str:
    """Hash of this module's source (the components' keys carry the generation and scoring code)."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _key(ctx: ItemContext, row: Row, metric: str, net_settings: dict) -> dict:
    a, b = row.pair
    return {"pair": [ctx.scores_settings(a), ctx.scores_settings(b)], "metric": metric,
            "network": net_settings, "code": _code()}


def pair_values(ctx: ItemContext, row: Row, metrics) -> dict[str, np.ndarray]:
    """Per-item distances [N] of pair row `row` for each of `metrics` (cached in the artifact store)."""
    unknown = sorted(set(metrics) - set(PAIR_METRICS))
    if unknown:
        raise ValueError(f"unknown pair metrics {unknown}; expected {sorted(PAIR_METRICS)}")
    comp, store = ctx.comp, ctx.artifacts
    nets = {m: (lpaps_network(comp) if m == "lpaps" else None) for m in metrics}
    keys = {m: _key(ctx, row, m, nets[m].settings() if nets[m] else {}) for m in metrics}
    names = {m: f"pair-{m}-{settings_hash(keys[m])}.npy" for m in metrics}
    out = {m: ARRAY.load(p) for m, name in names.items() if (p := store.fetch(name)) is not None}
    todo = [m for m in metrics if m not in out]
    if not todo:
        return out
    n = len(ctx.items()[0])
    vals = {m: np.empty(n, np.float64) for m in todo}
    t0 = time.time()
    for s in range(0, n, CHUNK):
        idx = list(range(s, min(n, s + CHUNK)))
        wa, wb = (item_audio(ctx, r, idx) for r in row.pair)
        n_common = min(len(w) for w in wa + wb)  # (a decoder may give a few samples more than a real clip)
        wa, wb = [w[:n_common] for w in wa], [w[:n_common] for w in wb]
        for m in todo:
            if m == "mel":
                d = mel_distance(torch.from_numpy(np.stack(wa)), torch.from_numpy(np.stack(wb)), comp.sample_rate)
            else:
                d = Fm.lpaps(nets[m](wa, comp.sample_rate), nets[m](wb, comp.sample_rate))
            vals[m][idx] = d.double().numpy()
    for m in todo:  # (computed together: each file through the store as `artifacts.cached` writes it)
        out[m] = cached(store, names[m], lambda m=m: vals[m], ARRAY, keys[m])
    ctx.log(f"[runner]   {row.name}: {', '.join(todo)} of {n} item pairs ({time.time() - t0:.0f} s)")
    return out


def pair_dists(ctx: ItemContext, row: Row, metrics, boot: Bootstrap) -> dict[str, PairDist]:
    """The pair metrics among `metrics` of pair row `row`: mean over items, bootstrap over test clips, std."""
    ms = [m for m in metrics if m in PAIR_METRICS]
    if not ms:
        return {}
    unit = ctx.items()[0]
    out = {}
    for m, v in pair_values(ctx, row, ms).items():
        d = item_mean_dist(v, unit, boot)
        out[m] = PairDist(**{f.name: getattr(d, f.name) for f in dataclasses.fields(d)},
                          std=float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
    return out
