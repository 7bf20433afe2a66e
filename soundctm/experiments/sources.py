"""Where a row's audio comes from: one registry of audio sources (`Row.source`), used by the scored rows
(`Runner.audio`) and by the paired distances (`experiments.pairs`).

A source gives the audio of any items of a row (`audio(ctx, row, idx)`, in item order), so a caller can
take every item at once or a chunk at a time; decoding is always done in the same batches of
`DECODE_BATCH` items from the first index given, so the waveforms do not depend on how a caller chunks.
A source may also re-pair the items (`pairing`): which real clip KL compares an item with, and which
caption the text-aware metrics read.

    "sampler"            the row's generated latents, decoded (an application row: its application's audio)
    "lowpass"            the low-passed test clip (the bandwidth-extension input; `experiments.applications`)
    "zeros"              decoded all-zero latents (the trivial baseline every quality claim is re-checked with)
    "noise"              decoded prior noise at the latents' scale
    "real-other"         another real take of the test clip (the test clip itself on a tier without re-takes)
    "vae-recon"          that take through the VAE (the codec's ceiling)
    "shuffled-captions"  that take paired with another clip's captions (the text metrics' floor)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from soundctm.experiments import applications as A
from soundctm.experiments.context import ItemContext
from soundctm.experiments.generation import sample_row
from soundctm.experiments.spec import Row
from soundctm.rng import prior_noise
from soundctm.train.checkpoint import load_export

__all__ = ["Source", "SOURCES", "DECODE_BATCH", "BATCH", "NOISE_SEED_OFFSET", "generate", "row_audio", "item_audio",
           "decode"]

DECODE_BATCH = 16
BATCH = 40  # generation batch
NOISE_SEED_OFFSET = 10_000_019  # the "noise" row's draws: another stream than the samplers' prior noise


@dataclass(frozen=True)
class Source:
    audio: Callable[[ItemContext, Row, list[int]], list[np.ndarray]]
    # (ctx, unit [N], captions [N]) -> (the unit each item is paired with, the captions), None: as they are
    pairing: Callable[[ItemContext, np.ndarray, list[str]], tuple[np.ndarray, list[str]]] | None = None


@torch.no_grad()
def decode(vae, z: torch.Tensor, device) -> list[np.ndarray]:
    """`vae.decode` of `z` [N, C, T] in batches of DECODE_BATCH, as float32 waveforms."""
    return [w for i in range(0, len(z), DECODE_BATCH)
            for w in vae.decode(z[i : i + DECODE_BATCH].to(device)).float()[:, 0].cpu().numpy()]


def generate(ctx: ItemContext, row: Row, exports, model_ids: list[str]) -> torch.Tensor:
    """A sampler row's latents of every item [N, C, T]: item i from the model of training seed i mod n
    (`exports`, `model_ids` their checksums), its caption and its prior noise, in batches of BATCH items."""
    models = [load_export(p, ctx.tier.device) for p in exports]
    unit, caps, seeds = ctx.items()
    n, out, t0 = len(unit), [None] * len(unit), time.time()
    for m_i, model in enumerate(models):
        idx = [i for i in range(n) if i % len(models) == m_i]
        for b in range(0, len(idx), BATCH):
            part = idx[b : b + BATCH]
            cond, uncond = ctx.conditioning(model, [caps[i] for i in part])
            z_T = prior_noise([seeds[i] for i in part], tuple(model.latent_shape), device=ctx.tier.device)
            z = (A.app_latents(ctx, row, model, part, z_T, cond, uncond, model_id=model_ids[m_i])
                 if A.is_app(row) else sample_row(row, model, z_T, cond, uncond, seeds=[seeds[i] for i in part])
                 ).float().cpu()
            for i, zi in zip(part, z):
                out[i] = zi
            ctx.log(f"[runner]   {row.name}: {sum(x is not None for x in out)}/{n} latents "
                    f"({time.time() - t0:.0f} s)")
    return torch.stack(out)


def _sampler(ctx: ItemContext, row: Row, idx: list[int]) -> list[np.ndarray]:
    wavs = ctx.decode(ctx.latents(row)[idx])
    return A.app_audio(ctx, row, wavs, idx) if A.is_app(row) else wavs


def _lowpass(ctx: ItemContext, row: Row, idx: list[int]) -> list[np.ndarray]:
    return A.app_audio(ctx, row, None, idx)


def _zeros(ctx: ItemContext, row: Row, idx: list[int]) -> list[np.ndarray]:
    c, t = ctx.latent_shape()
    one = ctx.decode(torch.zeros(1, c, t, device=ctx.tier.device))[0]
    return [one] * len(idx)


def _noise(ctx: ItemContext, row: Row, idx: list[int]) -> list[np.ndarray]:
    c, t = ctx.latent_shape()
    sd = float(ctx.comp.vae.sigma_data)  # latents are normalised to N(0, sigma_data^2) per channel
    seeds = ctx.items()[2]
    return ctx.decode(prior_noise([seeds[i] + NOISE_SEED_OFFSET for i in idx], (c, t), sigma_max=sd,
                                  device=ctx.tier.device))


def _real_other(ctx: ItemContext, row: Row, idx: list[int]) -> list[np.ndarray]:
    takes = ctx.real_takes()
    return [takes[i] for i in idx]


@torch.no_grad()
def _vae_recon(ctx: ItemContext, row: Row, idx: list[int]) -> list[np.ndarray]:
    vae, dev = ctx.comp.vae, ctx.tier.device
    x = torch.from_numpy(np.stack(_real_other(ctx, row, idx)))[:, None]
    z = torch.cat([vae.encode(x[i : i + DECODE_BATCH].to(dev)).cpu() for i in range(0, len(x), DECODE_BATCH)])
    return ctx.decode(z)


def _shuffled_pairing(ctx: ItemContext, unit: np.ndarray, caps: list[str]) -> tuple[np.ndarray, list[str]]:
    """Each item paired with the clip half the test set away, and that clip's captions."""
    n_u = len(ctx.units)
    pair = (unit + n_u // 2) % n_u
    return pair, [ctx.units[int(p)].captions[(i // ctx.S) % ctx.K] for i, p in enumerate(pair)]


SOURCES: dict[str, Source] = {
    "sampler": Source(_sampler),
    **{name: Source(_lowpass) for name in A.APP_SOURCES},
    "zeros": Source(_zeros),
    "noise": Source(_noise),
    "real-other": Source(_real_other),
    "vae-recon": Source(_vae_recon),
    "shuffled-captions": Source(_real_other, _shuffled_pairing),
}


def _source(row: Row) -> Source:
    if row.source not in SOURCES:
        raise ValueError(f"unknown source {row.source!r}; expected one of {sorted(SOURCES)}")
    return SOURCES[row.source]


def item_audio(ctx: ItemContext, row: Row, idx) -> list[np.ndarray]:
    """The audio of `row`'s items `idx`, in that order."""
    return _source(row).audio(ctx, row, list(idx))


def row_audio(ctx: ItemContext, row: Row) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """(waveforms, pair [N] (the unit whose real clip KL pairs with), captions) of every item of `row`."""
    unit, caps, _ = ctx.items()
    src = _source(row)
    wavs = src.audio(ctx, row, list(range(len(unit))))
    pair, caps = src.pairing(ctx, unit, caps) if src.pairing is not None else (unit.copy(), caps)
    return wavs, pair, caps
