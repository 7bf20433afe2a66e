"""Encode a captioned dataset once with a VAE encoder and keep the latents on disk.

Layout: `<cache_root>/<name>-<key>/` holding

    latents.npy   float32 [N_items, C, T]  (one item per clip; memory-mapped when loaded)
    index.json    {"key", "settings", "clip_ids": [N], "captions": [N][k], "shape", "format_version"}

`key` is a short sha256 of (corpus id, VAE checksum, sample rate, clip length, format version), so
changing any of them names a different directory. A cache is built in a temporary sibling
directory and renamed into place only when complete: a crash leaves no cache that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from soundctm.io import settings_hash, sha256_file

CACHE_FORMAT_VERSION = 1


def file_checksum(path: str | os.PathLike, n: int = 16) -> str:
    """sha256 of a file's bytes, first `n` hex digits."""
    return sha256_file(path)[:n]


def state_dict_checksum(sd: Mapping[str, torch.Tensor], n: int = 16) -> str:
    """sha256 over a state dict's keys, dtypes, shapes and values (sorted by key), first `n` hex digits."""
    h = hashlib.sha256()
    for k in sorted(sd):
        v = sd[k]
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            h.update(t.numpy().tobytes())
        else:
            h.update(repr(v).encode())
    return h.hexdigest()[:n]


def latent_cache_key(*, corpus_id: str, vae_checksum: str, sample_rate: int, clip_samples: int) -> str:
    """Short hex key naming a cache; differs whenever any setting differs."""
    settings = {
        "corpus_id": str(corpus_id),
        "vae_checksum": str(vae_checksum),
        "sample_rate": int(sample_rate),
        "clip_samples": int(clip_samples),
        "format_version": CACHE_FORMAT_VERSION,
    }
    return settings_hash(settings)


def latent_cache_dir(
    cache_root: str | os.PathLike, *, corpus_id: str, vae_checksum: str, sample_rate: int, clip_samples: int
) -> Path:
    """Directory a cache with these settings lives in."""
    key = latent_cache_key(
        corpus_id=corpus_id, vae_checksum=vae_checksum, sample_rate=sample_rate, clip_samples=clip_samples
    )
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(corpus_id))[:60]
    return Path(cache_root).expanduser() / f"{name}-{sample_rate}-{clip_samples}-{key}"


class LatentCache:
    """Latents of every clip of a dataset.

    latents: FloatTensor [N_items, C, T] (memory-mapped); captions: list (per item) of list[str]
    (all captions / paraphrases of that clip); clip_ids: list[str]. Item i:
    dict(latent=[C, T], captions=list[str], clip_id=str, index=int).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        index_file = self.path / "index.json"
        if not index_file.exists() or not (self.path / "latents.npy").exists():
            raise FileNotFoundError(f"no complete latent cache at {self.path}")
        self.meta = json.loads(index_file.read_text())
        arr = np.load(self.path / "latents.npy", mmap_mode="c")
        if list(arr.shape) != list(self.meta["shape"]):
            raise ValueError(
                f"{self.path}: latents.npy shape {arr.shape} != index.json shape {self.meta['shape']}"
            )
        self.latents = torch.from_numpy(arr)
        self.captions: list[list[str]] = self.meta["captions"]
        self.clip_ids: list[str] = self.meta["clip_ids"]
        self.key: str = self.meta["key"]
        self.settings: dict = self.meta["settings"]

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, i: int) -> dict:
        return {
            "latent": self.latents[i],
            "captions": self.captions[i],
            "clip_id": self.clip_ids[i],
            "index": i,
        }

    def __repr__(self) -> str:
        return f"LatentCache({self.path.name}: {tuple(self.latents.shape)})"


def _clips_of(dataset) -> tuple[list[str], dict[str, list[str]], Callable[[str], torch.Tensor]]:
    """(clip ids, captions per clip, loader clip_id -> audio [1, N]) for any captioned dataset."""
    if hasattr(dataset, "captions_by_clip") and hasattr(dataset, "load_clip"):
        caps = dataset.captions_by_clip()
        return list(caps), caps, dataset.load_clip
    caps: dict[str, list[str]] = OrderedDict()
    first: dict[str, int] = {}
    for i in range(len(dataset)):
        item = dataset[i]
        cid = str(item["youtube_id"])
        caps.setdefault(cid, []).append(item["caption"])
        first.setdefault(cid, i)
    return list(caps), dict(caps), lambda cid: dataset[first[cid]]["audio"]


def find_latent_cache(
    cache_root, *, corpus_id, vae_checksum, sample_rate, clip_samples
) -> LatentCache | None:
    """The complete cache for these settings, or None."""
    d = latent_cache_dir(
        cache_root,
        corpus_id=corpus_id,
        vae_checksum=vae_checksum,
        sample_rate=sample_rate,
        clip_samples=clip_samples,
    )
    try:
        return LatentCache(d)
    except FileNotFoundError:
        return None


def build_latent_cache(
    dataset,
    encode_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    cache_root,
    corpus_id: str,
    vae_checksum: str,
    sample_rate: int,
    clip_samples: int,
    batch_size: int = 16,
    progress: bool = True,
) -> LatentCache:
    """Encode every clip of `dataset` once and store the latents (or reuse a complete cache).

    dataset: an `AudioCapsDataset` (clips are taken once per youtube_id, with all their captions) or
        any dataset of dicts with audio [1, N], caption, youtube_id.
    encode_fn: audio [B, 1, clip_samples] -> latents [B, C, T]; called under torch.no_grad().
    Returns a `LatentCache` with one item per clip, in first-appearance order.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if int(sample_rate) <= 0 or int(clip_samples) <= 0:
        raise ValueError(f"sample_rate and clip_samples must be positive, got {sample_rate}, {clip_samples}")
    for attr, want in (("sample_rate", sample_rate), ("clip_samples", clip_samples)):
        have = getattr(dataset, attr, want)
        if int(have) != int(want):
            raise ValueError(f"dataset {attr} is {have} but the cache was asked for {want}")
    final = latent_cache_dir(
        cache_root,
        corpus_id=corpus_id,
        vae_checksum=vae_checksum,
        sample_rate=sample_rate,
        clip_samples=clip_samples,
    )
    key = latent_cache_key(
        corpus_id=corpus_id, vae_checksum=vae_checksum, sample_rate=sample_rate, clip_samples=clip_samples
    )
    try:
        return LatentCache(final)
    except FileNotFoundError:
        pass

    clip_ids, caps, load = _clips_of(dataset)
    if not clip_ids:
        raise ValueError("cannot build a latent cache of an empty dataset")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        arr = None
        bar = None
        if progress:
            bar = tqdm(total=len(clip_ids), desc=f"latents {final.name}", unit="clip", mininterval=2.0)
        with torch.no_grad():
            for start in range(0, len(clip_ids), batch_size):
                ids = clip_ids[start : start + batch_size]
                audio = torch.stack([load(c).reshape(1, -1).float() for c in ids])  # [B, 1, N]
                if audio.shape[-1] != clip_samples:
                    raise ValueError(f"clip audio has {audio.shape[-1]} samples, expected {clip_samples}")
                z = encode_fn(audio)
                if not isinstance(z, torch.Tensor) or z.dim() != 3 or z.shape[0] != len(ids):
                    raise ValueError(
                        f"encode_fn must return latents [B, C, T] with B={len(ids)}, got "
                        f"{getattr(z, 'shape', type(z))}"
                    )
                if not torch.isfinite(z).all():
                    raise ValueError(f"encode_fn returned non-finite latents for clips {ids}")
                if arr is None:
                    arr = np.lib.format.open_memmap(
                        tmp / "latents.npy",
                        mode="w+",
                        dtype=np.float32,
                        shape=(len(clip_ids), z.shape[1], z.shape[2]),
                    )
                elif tuple(z.shape[1:]) != arr.shape[1:]:
                    raise ValueError(
                        f"encode_fn latent shape changed from {arr.shape[1:]} to {tuple(z.shape[1:])}"
                    )
                arr[start : start + len(ids)] = z.detach().float().cpu().numpy()
                if bar is not None:
                    bar.update(len(ids))
        if bar is not None:
            bar.close()
        arr.flush()
        shape = list(arr.shape)
        del arr
        with open(tmp / "latents.npy", "rb+") as f:
            os.fsync(f.fileno())
        meta = {
            "format_version": CACHE_FORMAT_VERSION,
            "key": key,
            "settings": {
                "corpus_id": str(corpus_id),
                "vae_checksum": str(vae_checksum),
                "sample_rate": int(sample_rate),
                "clip_samples": int(clip_samples),
            },
            "shape": shape,
            "clip_ids": clip_ids,
            "captions": [caps[c] for c in clip_ids],
        }
        (tmp / "index.json").write_text(json.dumps(meta) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if (final / "index.json").exists():  # another process finished the same cache first
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                if final.exists():  # leftover incomplete directory: replace it
                    shutil.rmtree(final)
                os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return LatentCache(final)
