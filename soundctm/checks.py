"""Training checks that need both a trained model and the evaluators (so they sit above `train` and
`metrics`): is a teacher's or student's audio text-dependent?
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from soundctm.ctm import CTMStudent
from soundctm.edm import karras_sigmas
from soundctm.metrics.indomain import tiny_evt
from soundctm.nn.text import Conditioner
from soundctm.sampling import heun_sample, karras_steps, sample, sample_seeded
from soundctm.train.components import get_tiny_components

__all__ = ["generate_latents", "text_dependence"]


def _test_set(corpus, n_clips: int):
    ds = corpus.dataset("test_5cap", verbose=False)
    caps = ds.captions_by_clip()
    ids = list(ds.clip_ids)[:n_clips]
    gt = corpus.ground_truth()
    row = {y: i for i, y in enumerate(gt.youtube_ids)}
    labels = np.stack([gt.labels[row[y]] for y in ids]).astype(bool)
    return ids, [caps[y][0] for y in ids], labels


def generate_latents(
    model, cond: torch.Tensor, uncond: torch.Tensor, *, omega: float, seeds, steps: int = 1, batch: int = 32
) -> torch.Tensor:
    """Latents [B, C, T]: teacher export (Heun on its N-point grid, CFG omega) or student (`steps` jumps, Alg. 1)."""
    if isinstance(model, CTMStudent):
        return sample_seeded(sample, model, karras_steps(steps), cond, uncond, seeds, batch=batch, omega=omega, nu=1.0)
    return sample_seeded(heun_sample, model, karras_sigmas(model.preset.n_grid), cond, uncond, seeds, batch=batch,
                         omega=omega)


@torch.no_grad()
def text_dependence(
    model, *, cache=None, n_clips: int = 64, omega: float = 4.0, steps: int = 1, seed: int = 0, log=print
) -> dict:
    """Is generated audio text-dependent? Measured with the in-domain evaluators on test captions.

    For the first `n_clips` test clips, one caption each, audio is generated (teacher: 40-step Heun;
    student: `steps` jumps of Algorithm 1) with CFG `omega` and decoded by the tiny VAE, then:
      - tiny-evt: accuracy = fraction of clips whose predicted top class is among the clip's ground-truth
        labels; chance = the same with the labels of a shuffled clip order (same predictions);
        plus the unconditional model's accuracy (cond = empty caption) for reference;
      - tiny-clap: caption -> generated-audio retrieval recall@1 / @5 among the n clips vs chance k / n,
        and the mean matched vs mismatched cosine similarity.
    """
    t0 = time.perf_counter()
    corpus, vae, clap = get_tiny_components(cache, progress=False, log=log)
    ids, captions, labels = _test_set(corpus, n_clips)
    n = len(ids)
    is_student = isinstance(model, CTMStudent)
    conditioner = Conditioner.for_model(clap, model)
    cond, uncond = conditioner(captions), conditioner.uncond
    seeds = [seed * 100003 + i for i in range(n)]
    z = generate_latents(model, cond, uncond, omega=omega, seeds=seeds, steps=steps)
    z_unc = generate_latents(model, uncond.expand(n, -1, -1), uncond, omega=1.0, seeds=seeds, steps=steps)
    wav = torch.cat([vae.decode(z[i : i + 16]) for i in range(0, n, 16)]).float()
    wav_unc = torch.cat([vae.decode(z_unc[i : i + 16]) for i in range(0, n, 16)]).float()
    sr = corpus.sample_rate

    evt_cache = None if cache is None else Path(cache).expanduser() / "tiny" / "evaluators"
    evt = tiny_evt(corpus_root=corpus.root, cache=evt_cache, log=False)
    pred = evt.forward([w.reshape(-1).numpy() for w in wav])["logits"].argmax(1)
    pred_unc = evt.forward([w.reshape(-1).numpy() for w in wav_unc])["logits"].argmax(1)
    hit = labels[np.arange(n), pred]
    perm = np.random.default_rng(seed).permutation(n)
    fixed = perm == np.arange(n)
    perm[fixed] = (perm[fixed] + 1) % n  # no clip keeps its own labels
    chance = labels[perm, pred]
    hit_unc = labels[np.arange(n), pred_unc]

    a = torch.nn.functional.normalize(clap.audio_embed(wav, sr), dim=-1)
    t = torch.nn.functional.normalize(clap.text_embed(captions), dim=-1)
    sim = t @ a.T  # [n captions, n audios]
    rank = (sim > sim.diag()[:, None]).sum(1)  # 0 = the matching audio ranks first
    off = ~torch.eye(n, dtype=torch.bool)
    res = {
        "n_clips": n,
        "omega": omega,
        "sampler": f"student, {steps} step(s)" if is_student else f"teacher, {model.preset.n_grid}-point Heun",
        "seed": seed,
        "evt_accuracy": float(hit.mean()),
        "evt_accuracy_shuffled_labels": float(chance.mean()),
        "evt_accuracy_unconditional": float(hit_unc.mean()),
        "clap_recall@1": float((rank < 1).float().mean()),
        "clap_recall@5": float((rank < 5).float().mean()),
        "clap_chance@1": 1.0 / n,
        "clap_chance@5": min(5, n) / n,
        "clap_matched_cosine": float(sim.diag().mean()),
        "clap_mismatched_cosine": float(sim[off].mean()),
        "seconds": time.perf_counter() - t0,
    }
    return res

