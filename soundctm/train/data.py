"""Conditioned latent data for teacher training and distillation.

The VAE and the text encoder are frozen, so both run once, before training: the latent cache
holds one latent per clip, and `ConditionedLatents` holds the text conditioning of every
(clip, paraphrase) pair plus the unconditional embedding (the encoder's output for ""). A
training step only indexes tensors.

Conditioning modes (set by the model preset's `cond_shape`):
  - "pooled": the pooled caption embedding as ONE token, cond [1, D] (tiny-dit; the paper DiT's
    single CLAP token).
  - "tokens": the token sequence [L, D], padded/truncated to the preset's L, padding zeroed
    (tiny-unet; the paper UNet's FLAN-T5 tokens).

Data order: global example index g (step * global_batch + j) maps to epoch g // P and position
g % P of a permutation of the P pairs drawn from (seed, epoch); so the examples a step sees depend
only on (seed, step, j), never on the number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from soundctm.data.latent_cache import build_latent_cache
from soundctm.io import file_lock
from soundctm.nn.text import COND_MODES, Conditioner, cond_mode, encode_conditioning  # noqa: F401  (re-exported)
from soundctm.paths import cache_dir
from soundctm.rng import derive_seed
from soundctm.train.components import get_tiny_components

__all__ = [
    "ConditionedLatents",
    "encode_conditioning",
    "build_conditioned",
    "epoch_permutation",
    "global_indices",
    "worker_indices",
    "COND_MODES",
]

@dataclass
class ConditionedLatents:
    """Latents with precomputed text conditioning.

    latents: [N, C, T] (one per clip); cond: [P, L, D] (one per (clip, paraphrase) pair);
    pair_clip: [P] long, the clip of each pair; captions: P strings; uncond: [1, L, D].
    """

    latents: torch.Tensor
    cond: torch.Tensor
    pair_clip: torch.Tensor
    captions: list[str]
    uncond: torch.Tensor
    info: dict

    def __post_init__(self):
        if self.latents.ndim != 3 or self.cond.ndim != 3 or self.uncond.shape[1:] != self.cond.shape[1:]:
            raise ValueError(
                f"bad shapes: latents {tuple(self.latents.shape)}, cond {tuple(self.cond.shape)}, "
                f"uncond {tuple(self.uncond.shape)}"
            )
        if self.pair_clip.shape != (self.cond.shape[0],) or len(self.captions) != self.cond.shape[0]:
            raise ValueError("pair_clip, captions and cond must have one entry per (clip, paraphrase) pair")
        if len(self.pair_clip) == 0:
            raise ValueError("no (clip, caption) pairs to train on")
        if int(self.pair_clip.max()) >= self.latents.shape[0] or int(self.pair_clip.min()) < 0:
            raise ValueError("pair_clip refers to a clip that is not in latents")

    @property
    def n_pairs(self) -> int:
        return int(self.cond.shape[0])

    def batch(self, pair_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pair_ids [B] -> (z0 [B, C, T], cond [B, L, D]) (float32 copies)."""
        pair_ids = torch.as_tensor(pair_ids, dtype=torch.long)
        clips = self.pair_clip[pair_ids]
        return self.latents[clips].float().clone(), self.cond[pair_ids].float().clone()


def build_conditioned(
    latents: torch.Tensor,
    captions: Sequence[Sequence[str]],
    text_encoder,
    *,
    mode: str,
    cond_len: int,
    info: dict | None = None,
) -> ConditionedLatents:
    """Encode every (clip, paraphrase) once. latents: [N, C, T]; captions: N lists of paraphrases."""
    if len(captions) != latents.shape[0]:
        raise ValueError(f"{latents.shape[0]} latents but {len(captions)} caption lists")
    flat, pair_clip = [], []
    for i, caps in enumerate(captions):
        for c in caps:
            flat.append(str(c))
            pair_clip.append(i)
    cond = encode_conditioning(text_encoder, flat, mode, cond_len)
    uncond = encode_conditioning(text_encoder, [""], mode, cond_len)
    return ConditionedLatents(
        torch.as_tensor(latents).float(),
        cond,
        torch.tensor(pair_clip, dtype=torch.long),
        flat,
        uncond,
        dict(info or {}, mode=mode),
    )


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of one epoch: a permutation of range(n) drawn from (seed, epoch). [n]."""
    g = torch.Generator().manual_seed(derive_seed(seed, epoch, "data-order"))
    return torch.randperm(n, generator=g)


def global_indices(step: int, global_batch: int) -> list[int]:
    """Global example indices of a step: step * global_batch + j, j = 0 .. global_batch - 1."""
    return [step * global_batch + j for j in range(global_batch)]


def worker_indices(step: int, global_batch: int, rank: int = 0, world: int = 1) -> list[int]:
    """The part of a step's global batch that worker `rank` of `world` processes (indices r::N)."""
    if global_batch % world:
        raise ValueError(f"global batch {global_batch} is not divisible by {world} workers")
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} out of range for {world} workers")
    return global_indices(step, global_batch)[rank::world]


def pairs_for(seed: int, indices: Sequence[int], n_pairs: int) -> torch.Tensor:
    """Global example indices -> pair ids through the per-epoch permutations. [len(indices)] long."""
    cache: dict[int, torch.Tensor] = {}
    out = []
    for g in indices:
        epoch, pos = divmod(int(g), n_pairs)
        if epoch not in cache:
            cache[epoch] = epoch_permutation(seed, epoch, n_pairs)
        out.append(int(cache[epoch][pos]))
    return torch.tensor(out, dtype=torch.long)


def tiny_conditioned(preset, cache=None, *, split: str = "train", log=print) -> ConditionedLatents:
    """The tiny tier's conditioned latents for a model preset: corpus, VAE and CLAP from
    `get_tiny_components(cache)`, latents from the latent cache (built once), conditioning encoded once."""
    corpus, vae, clap = get_tiny_components(cache, progress=False, log=log)
    root = (Path(cache).expanduser() if cache is not None else cache_dir()) / "tiny" / "latents"
    with file_lock(root / ".lock"):  # one encoder at a time; a second process then reads the cache
        lc = build_latent_cache(
            corpus.dataset(split, verbose=False),
            lambda wav: vae.encode(wav),
            cache_root=root,
            # the cache key names the corpus, not the split: every split but "train" (whose key is kept as
            # it was) names itself, so a validation cache is never the training one
            corpus_id=corpus.corpus_id if split == "train" else f"{corpus.corpus_id}-{split}",
            vae_checksum=vae.checksum(),
            sample_rate=corpus.sample_rate,
            clip_samples=corpus.clip_samples,
            progress=False,
        )
    mode = cond_mode(preset.cond_shape)
    if tuple(lc.latents.shape[1:]) != tuple(preset.latent_shape):
        raise ValueError(
            f"latent cache shape {tuple(lc.latents.shape[1:])} != preset {preset.name} latent shape "
            f"{preset.latent_shape}"
        )
    if clap.dim != preset.cond_shape[1]:
        raise ValueError(
            f"text encoder width {clap.dim} != preset {preset.name} cond width {preset.cond_shape[1]}"
        )
    info = {
        "corpus_id": corpus.corpus_id,
        "vae_checksum": vae.checksum(),
        "text_encoder": "tiny-clap",
        "text_checksum": clap.checksum(),
        "latent_cache": lc.key,
        "split": split,
    }
    return build_conditioned(
        torch.as_tensor(lc.latents), lc.captions, clap, mode=mode, cond_len=preset.cond_shape[0], info=info
    )
