"""What a row costs: seconds per sample of generating it, and the peak memory of training its model."""

from __future__ import annotations

import dataclasses

import torch

from soundctm.experiments.artifacts import JSON, cached, file_sha, settings_hash
from soundctm.experiments.generation import sample_row
from soundctm.experiments.spec import Row
from soundctm.experiments.store import Store
from soundctm.experiments.timing import time_call, timing_column
from soundctm.nn.text import Conditioner
from soundctm.rng import prior_noise
from soundctm.train.checkpoint import load_export, read_export_metadata
from soundctm.train.config import config_from_dict
from soundctm.train.memory import MEMORY_STEPS, training_memory

__all__ = ["row_timing", "row_timings", "train_memory"]


def row_timing(comp, export, row: Row, caption: str, seed: int, device, repeats: int, *, batch: int = 1,
               always_uncond: bool = False, warmup: int = 1) -> list[float]:
    """Seconds per sample of generating `batch` samples at once with the model `export`: prior noise (drawn
    on `device`), the row's sampler, VAE decode; the conditioning is computed once, outside the timing. One
    value per repeat after `warmup` untimed calls; on CUDA every call is synchronised (`timing.time_call`).
    `always_uncond`: the student evaluates the unconditional branch even at nu = 1 (the official sampler)."""
    model = load_export(export, device)
    con = Conditioner.for_model(comp.text, model)
    cond, uncond = con([caption] * batch).to(device), con.uncond.to(device)
    seeds = [seed + i for i in range(batch)]
    vae = comp.vae

    def once():
        z_T = prior_noise(seeds, tuple(model.latent_shape), device=device, generator_device=None)
        vae.decode(sample_row(row, model, z_T, cond, uncond, always_uncond=always_uncond))

    with torch.no_grad():
        return [t / batch for t in time_call(once, device, repeats, warmup)]


def row_timings(time_one, row: Row, batches=(1,), always_uncond=(False,)) -> dict[str, list[float]]:
    """`time_one(batch=, always_uncond=)` for every batch size and choice of always_uncond, keyed by its column
    name (`timing.timing_column`); always_uncond=True is timed only where it changes the work (a student row at
    nu = 1)."""
    out = {}
    for b in batches:
        for au in always_uncond:
            if au and not (row.sampler == "ctm" and row.nu == 1.0):
                continue
            out[timing_column(b, au)] = time_one(batch=b, always_uncond=au)
    return out


def train_memory(store: Store, exports, device, cache, log=print, name: str = "") -> tuple[list[float], str]:
    """Peak training memory (MiB) of every model in `exports`, each measured in a fresh process over a few
    steps of the exact settings it was trained with (`train.memory`), cached in `store`.
    Returns (values, what they are)."""
    out, what = [], None
    for p in exports:
        key = {"memory": 1, "model": file_sha(p), "steps": MEMORY_STEPS, "device": device}

        def measure(p=p, key=key):
            log(f"[runner]   {name}: measuring training memory of {p.parent.name} ...")
            cfg = config_from_dict(read_export_metadata(p)["train_config"])
            cfg = dataclasses.replace(cfg, device=device, cache=str(cache) if cache else None)
            return {**training_memory(cfg), "settings": key}

        rec = cached(store, f"memory-{settings_hash(key)}.json", measure, JSON)
        if "cuda_max_allocated_mib" in rec:
            out.append(rec["cuda_max_allocated_mib"])
            what = "train memory MiB (CUDA max allocated)"
        else:
            out.append(rec["train_rss_mib"])
            what = f"train memory MiB (CPU peak RSS added, batch {rec['batch_size']})"
    return out, what
