"""Reference-statistics cache: (mu, sigma, per-clip class probabilities) of a reference set.

Computed once per combination of settings and stored under a file name that carries all of them
(as stable-audio-metrics does), e.g.

    test__tiny-evt-v1__sr16000__clip2.048__win4096__hop4096__n120__files3f2a9c01d2e4__cfg81c0aa21.safetensors

(split, embedder name + version, embedder sample rate, clip length in seconds or `full`,
window, hop, number of files, checksum of the sorted file list (names, sizes, mtimes), and a
hash of every remaining embedder setting). Writes are atomic; a finished file is never
recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soundctm.io import load_safetensors, save_safetensors
from soundctm.metrics import functional as Fm
from soundctm.metrics.extract import extract_files
from soundctm.metrics.registry import Embedder
from soundctm.paths import cache_dir

__all__ = ["RefStats", "file_list_checksum", "ref_stats_path", "reference_stats", "stats_from_extracted"]


@dataclass
class RefStats:
    """Statistics of a reference set.

    mu: [D], sigma: [D, D] (None when the embedder has no embeddings); probs: [n, K] softmax of
    per-clip logits (None without logits); names: [n] file names the rows of `probs` belong to;
    settings: everything that went into them.
    """

    mu: np.ndarray | None
    sigma: np.ndarray | None
    probs: np.ndarray | None
    names: list[str]
    settings: dict[str, Any]
    path: Path | None = None

    def stems(self) -> list[str]:
        return [os.path.splitext(n)[0] for n in self.names]

    def probs_for(self, stems: Sequence[str]) -> np.ndarray:
        """Rows of `probs` for the given file stems (or names), in that order."""
        if self.probs is None:
            raise ValueError("these reference statistics hold no class probabilities")
        pos = {s: i for i, s in enumerate(self.stems())}
        pos.update({n: i for i, n in enumerate(self.names)})
        return self.probs[[pos[s] for s in stems]]


def file_list_checksum(files: Sequence[str | os.PathLike]) -> str:
    """12-hex checksum of the sorted list of (file name, size, mtime_ns)."""
    h = hashlib.sha1()
    for f in sorted(str(x) for x in files):
        st = os.stat(f)
        h.update(f"{os.path.basename(f)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def _fmt(v) -> str:
    return "full" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def ref_stats_path(
    cache: str | os.PathLike,
    split: str,
    emb: Embedder,
    files: Sequence[str | os.PathLike],
    clip_seconds: float | None = None,
) -> Path:
    """Cache file of the reference statistics for these settings."""
    settings = emb.settings()
    cfg = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    safe_split = "".join(c if c.isalnum() or c in "-_." else "-" for c in split)
    name = (
        f"{safe_split}__{emb.name}-v{emb.version}__sr{emb.sample_rate}__clip{_fmt(clip_seconds)}"
        f"__win{_fmt(emb.window)}__hop{_fmt(emb.hop)}__n{len(files)}__files{file_list_checksum(files)}"
        f"__cfg{cfg}.safetensors"
    )
    return Path(cache) / name


def stats_from_extracted(ext) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(mu, sigma, probs) from an `extract.Extracted`."""
    mu = sigma = probs = None
    if ext.embeddings is not None:
        mu, sigma = Fm.stats(ext.embeddings)
    if ext.logits is not None:
        probs = Fm.softmax(ext.logits)
    return mu, sigma, probs


def reference_stats(
    files: Sequence[str | os.PathLike],
    embedder: Embedder,
    *,
    split: str,
    cache: str | os.PathLike | None = None,
    clip_seconds: float | None = None,
    workers: int = 1,
    chunk_size: int = 32,
    work_dir: str | os.PathLike | None = None,
    progress: bool = True,
    map_chunks=None,
) -> RefStats:
    """Load the reference statistics of `files` from the cache, or compute (resumably) and store them.

    split: a label for the reference set in the file name (e.g. "tiny-test", "audiocaps-test").
    cache: directory (default `cache_dir()/refstats`).
    """

    if not files:
        raise ValueError("no reference files")
    if cache is None:
        cache = cache_dir() / "refstats"
    path = ref_stats_path(cache, split, embedder, files, clip_seconds)
    if path.exists():
        tensors, meta = load_safetensors(path)
        get = lambda k: tensors[k].numpy().astype(np.float64) if k in tensors else None
        return RefStats(get("mu"), get("sigma"), get("probs"), list(meta["names"]), meta["settings"], path)

    ext = extract_files(
        files,
        embedder,
        work_dir,
        workers=workers,
        chunk_size=chunk_size,
        clip_seconds=clip_seconds,
        progress=progress,
        map_chunks=map_chunks,
    )
    mu, sigma, probs = stats_from_extracted(ext)
    settings = dict(ext.settings, split=split, file_checksum=file_list_checksum(files))
    tensors = {}
    for k, v in (("mu", mu), ("sigma", sigma), ("probs", probs)):
        if v is not None:
            tensors[k] = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64))
    save_safetensors(path, tensors, {"names": ext.names, "settings": settings})
    return RefStats(mu, sigma, probs, list(ext.names), settings, path)
