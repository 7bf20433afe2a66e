"""EDM teacher training (VE formulation, Appendix C) and the text-dependence check.

One step (per example i of the global batch, all draws from (seed, step, i)):
    drop_i ~ Bernoulli(p_uncond)      caption replaced by the unconditional embedding
    ln sigma_i ~ N(-1.2, 1.2^2)       EDM lognormal training times
    eps_i ~ N(0, I)
    L = mean_i lambda(sigma_i) || z0_i - D(z0_i + sigma_i eps_i, sigma_i, c_i) ||^2
with an EMA of the teacher's weights (0.999, with warm-up) exported for inference.

Library entry point: `train_tiny_teacher(cache=None, preset="tiny-dit", force=False) -> Path`.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from soundctm.ctm import apply_dropout, ema_update, make_ema
from soundctm.edm import edm_dsm_loss
from soundctm.rng import example_generators, rand, randn
from soundctm.train.data import pairs_for, worker_indices
from soundctm.train.loop import TrainConfig, resolve_config, run_training

__all__ = [
    "TeacherTask",
    "teacher_draws",
    "tiny_teacher_config",
    "train_tiny_teacher",
    "text_dependence",
    "runs_dir",
    "run_key",
]

P_MEAN, P_STD = -1.2, 1.2  # EDM lognormal training times (Appendix C)


def teacher_draws(generators: list[torch.Generator], latent_shape: tuple[int, int], p_uncond: float):
    """(drop [B] bool, sigma [B], noise [B, C, T]) from per-example generators, in that order."""
    b = len(generators)
    drop = rand((b,), generators) < p_uncond
    sigma = torch.exp(P_MEAN + P_STD * randn((b,), generators))
    noise = randn((b, *latent_shape), generators)
    return drop, sigma, noise


class TeacherTask:
    """The teacher's model, EMA and per-step loss for `run_training`."""

    export_kind = "teacher"
    log_keys = ("loss",)

    def __init__(self, cfg: TrainConfig, data, device):
        from soundctm.presets import build_teacher

        self.cfg, self.data, self.device = cfg, data, device
        self.model = build_teacher(cfg.preset, seed=cfg.seed, device=device)
        self.preset = self.model.preset
        self.ema = make_ema(self.model)
        self.uncond = data.uncond.to(device)

    def losses(self, step: int, rank: int, world: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        idx = worker_indices(step, cfg.batch_size, rank, world)
        z0, cond = self.data.batch(pairs_for(cfg.seed, idx, self.data.n_pairs))
        gens = example_generators(cfg.seed, step, idx, "teacher")
        drop, sigma, noise = teacher_draws(gens, self.preset.latent_shape, cfg.p_uncond)
        dev = self.device
        cond = apply_dropout(cond.to(dev), self.uncond, drop.to(dev))
        loss = edm_dsm_loss(self.model, z0.to(dev), cond, sigma=sigma.to(dev), noise=noise.to(dev)).mean()
        return {"loss": loss}

    def update_ema(self, step: int) -> None:
        """EMA with a warm-up, mu_k = min(mu, (1 + k) / (10 + k)), so a short run's EMA does not keep a
        large share of the initial weights (0.999^1500 = 0.22 without it)."""
        ema_update(self.ema, self.model, min(self.cfg.ema_mu, (1 + step) / (10 + step)))

    def post_step(self, step: int) -> dict:
        return {}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def export_extra(self) -> dict:
        return {}


# ------------------------------------------------------------ tiny entry point


def runs_dir(cache=None) -> Path:
    from soundctm.paths import cache_dir

    return (Path(cache).expanduser() if cache is not None else cache_dir()) / "tiny" / "runs"


def run_key(cfg: TrainConfig, extra: dict | None = None) -> str:
    """Short hash of every setting that changes the trained weights (not threads / checkpoint cadence)."""
    d = resolve_config(cfg).to_dict()
    for k in ("threads", "checkpoint_every", "keep_checkpoints", "cache", "export"):
        d.pop(k, None)
    return hashlib.sha256(json.dumps([d, extra or {}], sort_keys=True, default=str).encode()).hexdigest()[:12]


def tiny_teacher_config(preset: str = "tiny-dit", **overrides) -> TrainConfig:
    """The settings `train_tiny_teacher` uses (CPU, a few minutes)."""
    base = dict(
        kind="teacher",
        preset=preset,
        steps=1500,
        batch_size=32,
        lr=1e-3,
        warmup_steps=50,
        checkpoint_every=250,
        data="tiny",
    )
    base.update(overrides)
    return TrainConfig(**base)


def _components_key(cache) -> dict:
    from soundctm.train.components import TinyComponentsConfig

    return {"components": TinyComponentsConfig().to_dict()}


def train_tiny_teacher(
    cache=None,
    preset: str = "tiny-dit",
    force: bool = False,
    *,
    progress: bool = True,
    log=print,
    **overrides,
) -> Path:
    """Build or reuse the tiny teacher for `preset`; returns the path of its export (EMA, safetensors).

    The run lives in `cache_dir()/tiny/runs/teacher-<preset>-<key>/`, key = hash of every setting
    (and of the tiny components' settings); an interrupted run resumes from its last checkpoint.
    """
    cfg = tiny_teacher_config(preset, cache=str(cache) if cache is not None else None, **overrides)
    run_dir = runs_dir(cache) / f"teacher-{preset}-{run_key(cfg, _components_key(cache))}"
    return build_or_reuse(cfg, run_dir, force=force, progress=progress, log=log)


def build_or_reuse(cfg: TrainConfig, run_dir: Path, *, force: bool, progress: bool, log) -> Path:
    """The export of the run in `run_dir`: reused if finished, else trained (resuming any checkpoint);
    `force` starts the run afresh."""
    export = run_dir / "export.safetensors"
    if export.exists() and not force:
        return export
    if force and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    run_training(cfg, run_dir, progress=progress, log=log)
    return export


# ------------------------------------------------------------ text dependence


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
    from soundctm.benchmark import Row, generate
    from soundctm.ctm import CTMStudent

    if isinstance(model, CTMStudent):
        row = Row("student", "student", steps, omega, 1.0, {})
    else:
        row = Row("teacher", "teacher", model.preset.n_grid, omega, None, {})
    return generate(model, row, cond, uncond, seeds, batch=batch)


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
    from soundctm.metrics.indomain import tiny_evt
    from soundctm.train.components import get_tiny_components
    from soundctm.train.data import encode_conditioning

    t0 = time.perf_counter()
    corpus, vae, clap = get_tiny_components(cache, progress=False, log=log)
    ids, captions, labels = _test_set(corpus, n_clips)
    n = len(ids)
    from soundctm.ctm import CTMStudent

    is_student = isinstance(model, CTMStudent)
    mode = "pooled" if model.cond_shape[0] == 1 else "tokens"
    cond = encode_conditioning(clap, captions, mode, model.cond_shape[0])
    uncond = encode_conditioning(clap, [""], mode, model.cond_shape[0])
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


__all__ += ["generate_latents"]
