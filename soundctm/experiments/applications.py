"""Application rows (Table 5: intensity control, Table 14: bandwidth extension) and their per-item metrics.

Row samplers of a student run whose latents come from `soundctm.apps` (`Row.app` holds their options;
`DEFAULTS` lists each one's and its default):

    "guidance"  Algorithm 3 (`apps.guidance`): `steps` jumps with omega, nu, gamma, toward item i's target
                intensity curve (`apps.intensity`: CURVES[i % 6]); option eta (the step scale).
    "ditto"     DITTO-2 (`apps.ditto`): z_T optimised toward the same target (options lr, iterations; omega
                is the row's), then Algorithm 1 with `steps`, omega, nu, gamma from the optimised z_T.
    "bwe"       bandwidth extension (`apps.bwe`) of item i's low-passed test clip, `steps` jumps with omega,
                nu, conditioned on item i's caption; options cutoff_hz, at_rate: the cut-off keeping the share of
                the band that cutoff_hz keeps at at_rate (3 kHz at 44.1 kHz: 1088 Hz at 16 kHz). Its audio is
                the decoded latents with the observed low band put back (`apps.bwe.consistency`). Option
                every_step=False: the control without consistency during sampling (a text-only generation
                with the observed band put back at the end).

Source "lowpass": the low-passed test clip itself (options cutoff_hz, at_rate), the input of "bwe".

The gamma noise of item i (DITTO-2's gamma = 0.2, guidance at gamma > 0) comes from its own generator seeded
with derive_seed(seed_i, "gamma-noise") (as `soundctm generate` does), so it does not depend on batching.

Per-item metric families (for any row with audio; bootstrapped over test clips like CLAP, `stats.item_mean_dist`):

    "intensity-mse"  MSE (dB^2) between f(x_i) (`apps.intensity.IntensityFeature`, the metric's numpy
                     implementation) and item i's target curve
    "lsd"            log-spectral distance to the item's test clip (`metrics.functional.lsd`: periodic Hann
                     window of 2048, hop 512, log10 of the power spectrum + 1e-10, RMS over frequency, mean
                     over frames)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from soundctm.apps import plots
from soundctm.apps.bwe import PAPER_CUTOFF_HZ, PAPER_RATE, consistency, equivalent_cutoff, extend_bandwidth, lowpass
from soundctm.apps.ditto import ITERATIONS, LR, optimize_z_T
from soundctm.apps.guidance import ETA, guided_sample
from soundctm.apps.intensity import CURVES, IntensityFeature, item_curve, item_targets, target_curve
from soundctm.experiments.spec import Row
from soundctm.metrics import functional as Fm
from soundctm.rng import derive_seed
from soundctm.sampling import karras_steps, sample

__all__ = ["APP_SAMPLERS", "APP_SOURCES", "APP_CODE", "ITEM_METRICS", "DEFAULTS", "ETA", "is_app", "app_options",
           "app_latents", "app_audio", "item_metric", "intensity_figure", "bwe_figure"]

APP_SAMPLERS = ("guidance", "ditto", "bwe")
APP_SOURCES = ("lowpass",)
# the code an application row's artifacts also depend on (relative to soundctm/, as the runner's code lists)
APP_CODE = ("apps", "experiments/applications.py")
ITEM_METRICS = {"intensity-mse": "intensity MSE [dB²]", "lsd": "LSD",
                "fidelity": "teacher-ODE error"}  # (fidelity: latents against the teacher, `Runner.item_metric`)
_BAND = {"cutoff_hz": PAPER_CUTOFF_HZ, "at_rate": PAPER_RATE}
DEFAULTS = {"guidance": {"eta": ETA}, "ditto": {"lr": LR, "iterations": ITERATIONS},
            "bwe": {**_BAND, "every_step": True}, "lowpass": dict(_BAND)}
_MEMO: dict[str, torch.Tensor] = {}  # optimised z_T per (runner settings, model, items, optimisation)


def _kind(row: Row) -> str:
    return row.sampler if row.source == "sampler" else row.source


def is_app(row: Row) -> bool:
    return (row.source == "sampler" and row.sampler in APP_SAMPLERS) or row.source in APP_SOURCES


def app_options(row: Row) -> dict:
    """The row's application options over their defaults (an unknown option is an error)."""
    defaults = DEFAULTS[_kind(row)]
    given = dict(row.app)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"row {row.name!r}: unknown {_kind(row)} options {unknown}; expected {sorted(defaults)}")
    return {**defaults, **given}


def _cutoff(row: Row, sample_rate: int) -> float:
    o = app_options(row)
    return equivalent_cutoff(sample_rate, o["cutoff_hz"], o["at_rate"])


def _gamma_generators(seeds) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(derive_seed(int(s), "gamma-noise")) for s in seeds]


def _clean(runner, indices) -> list[np.ndarray]:
    unit = runner.items()[0]
    return [runner.units[int(unit[i])].audio for i in indices]


def _decoder(vae):
    return lambda z: vae.decode(z)[:, 0]


def app_latents(runner, row: Row, model, part: list[int], z_T: torch.Tensor, cond: torch.Tensor,
                uncond: torch.Tensor, *, model_id: str) -> torch.Tensor:
    """Latents [len(part), C, T] of an application row for items `part` (the runner's batch) from their z_T.
    `model_id` names the model (its file hash), for sharing one DITTO-2 optimisation between rows."""
    o = app_options(row)
    vae, sr, dev = runner.comp.vae, runner.comp.sample_rate, z_T.device
    decode = _decoder(vae)
    grid = karras_steps(row.steps)
    all_seeds = runner.items()[2]
    seeds = [all_seeds[i] for i in part]
    if row.sampler in ("guidance", "ditto"):
        feature = IntensityFeature(sr)
        n_frames = feature.n_frames(vae.hop * z_T.shape[-1])
        target = torch.as_tensor(item_targets(part, n_frames), dtype=z_T.dtype, device=dev)
        if row.sampler == "guidance":
            return guided_sample(model, z_T, grid, cond, uncond, decode=decode, feature=feature, target=target,
                                 eta=float(o["eta"]), omega=row.omega, nu=row.nu, gamma=row.gamma,
                                 generator=_gamma_generators(seeds))
        key = json.dumps([runner.base_settings(), model_id, list(part), row.omega, o, feature.settings()],
                         sort_keys=True, default=str)
        if key not in _MEMO:
            if len(_MEMO) > 256:
                _MEMO.clear()
            _MEMO[key] = optimize_z_T(model, z_T, cond, decode=decode, feature=feature, target=target,
                                      omega=row.omega, lr=float(o["lr"]), iterations=int(o["iterations"])).cpu()
        return sample(model, _MEMO[key].to(dev), grid, cond, uncond, omega=row.omega, nu=row.nu, gamma=row.gamma,
                      generator=_gamma_generators(seeds))
    if row.sampler == "bwe":
        cut = _cutoff(row, sr)
        y = lowpass(torch.as_tensor(np.stack(_clean(runner, part)), dtype=z_T.dtype, device=dev), cut, sr)
        return extend_bandwidth(model, z_T, grid, cond, uncond, observation=y, cutoff_hz=cut, sample_rate=sr,
                                decode=decode, encode=lambda x: vae.encode(x[:, None]), omega=row.omega, nu=row.nu,
                                every_step=bool(o["every_step"]))
    raise ValueError(f"row {row.name!r} is not an application row")


def app_audio(runner, row: Row, wavs: list[np.ndarray] | None = None, indices=None) -> list[np.ndarray]:
    """The audio of an application row's items `indices` (default all): the low-passed test clip ("lowpass"),
    the decoded `wavs` with the observed band put back ("bwe"), or `wavs` unchanged."""
    n = len(runner.items()[0])
    idx = list(range(n)) if indices is None else list(indices)
    sr = runner.comp.sample_rate
    if row.source == "lowpass" or row.sampler == "bwe":
        cut = _cutoff(row, sr)
        unit, by_unit = runner.items()[0], {}
        for i in idx:  # each test clip low-passed once (its K x S items share it)
            u = int(unit[i])
            if u not in by_unit:
                by_unit[u] = lowpass(runner.units[u].audio, cut, sr)
        obs = {i: by_unit[int(unit[i])] for i in idx}
        if row.source == "lowpass":
            return [obs[i] for i in idx]
        if wavs is None or len(wavs) != len(idx):
            raise ValueError(f"row {row.name!r}: need the decoded audio of {len(idx)} items")
        return [consistency(torch.as_tensor(w, dtype=torch.float64), torch.as_tensor(obs[i], dtype=torch.float64),
                            cut, sr).numpy().astype(np.float32) for i, w in zip(idx, wavs)]
    if wavs is None:
        raise ValueError(f"row {row.name!r}: need its decoded audio")
    return wavs


def item_metric(runner, family: str, wavs: list[np.ndarray]) -> np.ndarray:
    """Per-item values [N] of `family` (ITEM_METRICS) for a row's audio `wavs` (every item, in item order)."""
    n = len(wavs)
    if family == "intensity-mse":
        feature = IntensityFeature(runner.comp.sample_rate)
        targets = item_targets(range(n), feature.n_frames(len(wavs[0])))
        return np.array([Fm.intensity_mse(feature.numpy(np.asarray(w)), t) for w, t in zip(wavs, targets)])
    if family == "lsd":
        return np.array([Fm.lsd(x, np.asarray(w)) for x, w in zip(_clean(runner, range(n)), wavs)])
    raise ValueError(f"unknown per-item metric {family!r}; expected one of {sorted(ITEM_METRICS)}")


# ----------------------------------------------------------------------------------------------- figures


@torch.no_grad()
def _decode_items(runner, row: Row, idx: list[int]) -> list[np.ndarray]:
    z = runner.latents(row)[idx].to(runner.tier.device)
    return list(runner.comp.vae.decode(z).float()[:, 0].cpu().numpy())


def intensity_figure(runner, result, out_dir, per_curve: int = 3) -> Path:
    """Figs. 10-11: one column per target curve, one row per generating row of the table; each panel the
    target (dashed) and the curves obtained for the first `per_curve` items of that target."""
    rows = [r for r in result.table.rows if r.source == "sampler" and r.sampler != "bwe" and r.name in result.dists]
    sr = runner.comp.sample_rate
    feature = IntensityFeature(sr)
    n = len(runner.items()[0])
    picks = {c: [i for i in range(n) if item_curve(i) == c][:per_curve] for c in CURVES}
    obtained = {}
    for r in rows:
        idx = [i for c in CURVES for i in picks[c]]
        curves = dict(zip(idx, (feature.numpy(w) for w in app_audio(runner, r, _decode_items(runner, r, idx), idx))))
        obtained[r.display] = {c: [curves[i] for i in picks[c]] for c in CURVES}
    n_frames = len(next(iter(next(iter(obtained.values())).values()))[0]) if obtained else 1
    targets = {c: target_curve(c, n_frames) for c in CURVES}
    path = Path(out_dir) / f"{result.table.name}_intensity.png"
    order = ("1st", "2nd", "3rd")
    plots.intensity_grid(obtained, targets, feature.hop / sr, path,
                         title=f"{result.table.title}: target (dashed) and obtained intensity",
                         item_labels=[f"obtained, {order[k] if k < 3 else f'{k + 1}th'} test item of the target"
                                      for k in range(per_curve)])
    return path


def bwe_figure(runner, result, out_dir, n_clips: int = 2) -> Path:
    """Fig. 14: spectrograms (log-frequency) of the low-passed input, the extension (the table's "bwe" row with
    consistency at every step and the most steps) and the ground truth, for the first item of the first
    `n_clips` test clips."""
    low = next(r for r in result.table.rows if r.source == "lowpass")
    ext = max((r for r in result.table.rows if r.source == "sampler" and r.sampler == "bwe"
               and app_options(r)["every_step"]), key=lambda r: r.steps)
    sr = runner.comp.sample_rate
    per_unit = runner.K * runner.S
    idx = [u * per_unit for u in range(min(n_clips, len(runner.units)))]
    lows = app_audio(runner, low, indices=idx)
    exts = app_audio(runner, ext, _decode_items(runner, ext, idx), idx)
    truth = _clean(runner, idx)
    panels = [[(f"{low.display}", a), (f"{ext.display}", b), ("ground truth", c)] for a, b, c in zip(lows, exts, truth)]
    path = Path(out_dir) / f"{result.table.name}_spectrograms.png"
    plots.spectrogram_grid(panels, sr, path, cutoff_hz=_cutoff(low, sr), title=result.table.title)
    return path
