"""Contrastive (InfoNCE) training of the tiny CLAP and its retrieval evaluation.

Each step draws a batch of distinct clips, pairs each with one of its paraphrases at random, and
minimises the symmetric InfoNCE loss of the audio and text embeddings (CLAP, Wu et al. 2023).
Log-mel features of the clips are computed once; audio augmentation is a random gain (a shift
of the log-mel by a constant) and a random circular time shift.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from soundctm.nn.text import TinyCLAP
from soundctm.train.config import lr_at

__all__ = ["TextTrainConfig", "clap_features", "train_clap", "retrieval_recall"]


@dataclass(frozen=True)
class TextTrainConfig:
    """Settings of a tiny-CLAP training run (defaults: a couple of minutes on one CPU thread)."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    lr_final_fraction: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    gain_db: float = 6.0  # random gain in [-gain_db, +gain_db]
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def clap_features(clap: TinyCLAP, audio: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Scaled log-mel features of `audio` [N, 1, L] (at clap.sample_rate) -> [N, n_mels, frames]."""
    return torch.cat(
        [clap.audio.features(audio[i : i + batch_size]) for i in range(0, len(audio), batch_size)]
    )


def train_clap(
    clap: TinyCLAP,
    audio: torch.Tensor,
    captions: Sequence[Sequence[str]],
    cfg: TextTrainConfig = TextTrainConfig(),
    progress: bool = True,
    log_every: int = 50,
) -> dict:
    """Train `clap` in place on paired clips. audio: [N, 1, L] at clap.sample_rate; captions[i]:
    the paraphrases of clip i (>= 1). Deterministic given `cfg.seed`.

    Returns a history dict {"step": [...], "loss": [...], "seconds": float}.
    """

    n = len(audio)
    if n != len(captions):
        raise ValueError(f"{n} clips but {len(captions)} caption lists")
    if any(len(c) == 0 for c in captions):
        raise ValueError("every clip needs at least one caption")
    if n < 2:
        raise ValueError("contrastive training needs at least two clips")
    bs = min(cfg.batch_size, n)
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    feats = clap_features(clap, audio)
    gain = cfg.gain_db / 20.0  # log10-magnitude shift, scaled like TinyAudioEncoder.features
    opt = torch.optim.AdamW(clap.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    hist: dict = {"step": [], "loss": []}
    clap.train()
    t0 = time.time()
    bar = tqdm(range(cfg.steps), desc="clap", disable=not progress, mininterval=2.0)
    ema = None
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.lr_final_fraction)
        idx = torch.randperm(n, generator=g)[:bs]
        caps = [captions[i][int(torch.randint(len(captions[i]), (), generator=g))] for i in idx.tolist()]
        x = feats[idx]
        shift = (torch.rand(bs, 1, 1, generator=g) * 2 - 1) * gain / 2.5
        roll = int(torch.randint(x.shape[-1], (), generator=g))
        x = torch.roll(x + shift, roll, dims=-1)
        loss = clap.loss(x, caps, features=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(clap.parameters(), cfg.grad_clip)
        opt.step()
        val = float(loss.detach())
        ema = val if ema is None else 0.95 * ema + 0.05 * val
        if step % log_every == 0 or step == cfg.steps - 1:
            hist["step"].append(step)
            hist["loss"].append(val)
        bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
    clap.eval()
    hist["seconds"] = time.time() - t0
    return hist


@torch.no_grad()
def retrieval_recall(
    clap: TinyCLAP,
    audio: torch.Tensor,
    captions: Sequence[Sequence[str]],
    ks: Sequence[int] = (1, 5),
    sample_rate: int | None = None,
    batch_size: int = 64,
) -> dict:
    """Text -> audio retrieval: every caption of clip i queries the gallery of all N clips.

    audio: [N, 1, L]; captions[i]: the captions of clip i. Returns {"recall@k": float,
    "chance@k": k / N, "n_clips": N, "n_queries": Q, "mean_rank": float (1 = best)}.
    """
    clap.eval()
    sr = clap.sample_rate if sample_rate is None else sample_rate
    n = len(audio)
    if n != len(captions):
        raise ValueError(f"{n} clips but {len(captions)} caption lists")
    a = torch.cat([clap.audio_embed(audio[i : i + batch_size], sr) for i in range(0, n, batch_size)])
    queries = [(i, c) for i, caps in enumerate(captions) for c in caps]
    if not queries:
        raise ValueError("no captions to query with")
    t = torch.cat(
        [
            clap.text_embed([c for _, c in queries[j : j + batch_size]])
            for j in range(0, len(queries), batch_size)
        ]
    )
    target = torch.tensor([i for i, _ in queries], device=t.device)
    sims = t @ a.to(t).t()  # [Q, N]
    own = sims.gather(1, target[:, None].to(sims.device))
    rank = 1 + (sims > own).sum(dim=1)  # ties count in the query's favour
    out: dict = {}
    for k in ks:
        out[f"recall@{k}"] = float((rank <= k).double().mean())
        out[f"chance@{k}"] = min(k, n) / n
    out["mean_rank"] = float(rank.double().mean())
    out["n_clips"] = n
    out["n_queries"] = len(queries)
    return out
