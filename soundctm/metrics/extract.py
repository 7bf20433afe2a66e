"""Resumable embedding extraction over a directory of audio files.

The sorted file list is cut into chunks of `chunk_size` files; chunk i always holds files
[i * chunk_size, (i + 1) * chunk_size) of the sorted list, so the result does not depend on the
order in which chunks finish or on the number of workers. Each finished chunk is written
atomically to the work directory as soon as it is done (file name = chunk index + a hash of the
chunk's file names, sizes and modification times + the embedder key), so a killed run or a
killed worker loses no finished chunk, and a re-run computes only the missing ones.

Single-process (`workers <= 1`) and parallel runs (`workers > 1` with a `map_chunks` function, e.g.
`soundctm.distributed.map_chunks_ray`, passed in by the caller) call the same `compute_chunk` and
give the same numbers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from soundctm.audio import UnreadableAudioError, read_audio  # noqa: F401  (re-exported)
from soundctm.io import atomic_write
from soundctm.metrics.registry import Embedder, get_embedder, prepare_waveforms
from soundctm.paths import cache_dir

__all__ = [
    "AUDIO_EXTENSIONS",
    "EmbedderSpec",
    "Extracted",
    "ChunkJob",
    "list_audio",
    "read_audio",
    "UnreadableAudioError",
    "plan_chunks",
    "compute_chunk",
    "extract_files",
    "extract_dir",
    "embedder_key",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


# ----------------------------------------------------------------------------- embedder spec
@dataclass(frozen=True)
class EmbedderSpec:
    """How to (re)build an embedder in another process: registry name + factory kwargs."""

    name: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, name: str, **kw) -> EmbedderSpec:
        return cls(name, tuple(sorted(kw.items())))

    def build(self) -> Embedder:
        return get_embedder(self.name, **dict(self.kwargs))


def _resolve(embedder: Embedder | EmbedderSpec | str) -> tuple[Embedder, Embedder | EmbedderSpec]:
    """(live embedder for this process, what to ship to workers)."""
    if isinstance(embedder, str):
        embedder = EmbedderSpec(embedder)
    if isinstance(embedder, EmbedderSpec):
        return embedder.build(), embedder
    if isinstance(embedder, Embedder):
        return embedder, embedder
    raise TypeError(f"expected an Embedder, EmbedderSpec or registry name, got {type(embedder).__name__}")


def _live_embedder(shippable: Embedder | EmbedderSpec) -> Embedder:
    """In a worker: the embedder itself, or built from its spec (one model per worker)."""
    return shippable.build() if isinstance(shippable, EmbedderSpec) else shippable


def _compute_job(emb: Embedder, job: ChunkJob, clip_seconds: float | None) -> dict[str, np.ndarray]:
    return compute_chunk(emb, job.files, clip_seconds)


def embedder_key(emb: Embedder, clip_seconds: float | None = None) -> str:
    """Short, file-name-safe key of every setting that changes the features."""
    s = dict(emb.settings())
    s["clip_seconds"] = clip_seconds
    digest = hashlib.sha1(json.dumps(s, sort_keys=True).encode()).hexdigest()[:10]
    return f"{emb.name}-v{emb.version}-sr{emb.sample_rate}-{digest}"


# ----------------------------------------------------------------------------- files
def list_audio(directory: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Audio files directly inside `directory`, sorted by name."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"audio directory not found: {d}")
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in extensions)
    return files


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


# ----------------------------------------------------------------------------- chunks
@dataclass(frozen=True)
class ChunkJob:
    index: int
    files: tuple[str, ...]
    key: str  # hash of names, sizes, mtimes (+ embedder key) -> file name in the work dir

    @property
    def filename(self) -> str:
        return f"chunk_{self.index:05d}_{self.key}.npz"


def plan_chunks(files: Sequence[str | os.PathLike], chunk_size: int, emb_key: str) -> list[ChunkJob]:
    """Cut the sorted file list into chunks; each chunk's key covers its files' name, size, mtime."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    files = sorted(str(f) for f in files)
    jobs = []
    for i in range(0, len(files), chunk_size):
        part = tuple(files[i : i + chunk_size])
        h = hashlib.sha1(emb_key.encode())
        for f in part:
            st = os.stat(f)
            h.update(f"{os.path.basename(f)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        jobs.append(ChunkJob(i // chunk_size, part, h.hexdigest()[:12]))
    return jobs


def compute_chunk(
    emb: Embedder, files: Sequence[str], clip_seconds: float | None = None
) -> dict[str, np.ndarray]:
    """Embed one chunk of files.

    Returns {"embeddings": [F, D], "frames": [n], "logits": [n, K]} (as the embedder outputs),
    in the order of `files`. NaN/Inf samples raise `NonFiniteAudioError` naming the file.
    """
    wavs = []
    for f in files:
        x, sr = read_audio(f)
        w = prepare_waveforms([x], sr, emb.sample_rate, min_samples=1, names=[str(f)])[0]
        if clip_seconds is not None:
            w = _fit_length(w, int(round(clip_seconds * emb.sample_rate)))
        wavs.append(w)
    out = emb.embed(wavs, emb.sample_rate, names=[str(f) for f in files])
    return {k: np.asarray(v) for k, v in out.items()}


def _save_chunk(path: Path, job: ChunkJob, result: dict[str, np.ndarray]) -> None:
    arrays = dict(result)
    arrays["names"] = np.array([os.path.basename(f) for f in job.files])

    def _w(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, _w)


def _load_chunk(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# ----------------------------------------------------------------------------- results
@dataclass
class Extracted:
    """Features of a set of files, in sorted file-name order.

    names: [n] file names; embeddings: [F, D] (frames of all files, concatenated) or None;
    frames: [n] frames per file (or None); logits: [n, K] or None.
    computed / reused: chunk indices computed in this run / loaded from the work dir.
    """

    names: list[str]
    embeddings: np.ndarray | None
    frames: np.ndarray | None
    logits: np.ndarray | None
    settings: dict[str, Any]
    computed: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def stems(self) -> list[str]:
        return [os.path.splitext(n)[0] for n in self.names]

    def per_file(self) -> list[np.ndarray]:
        """Embeddings split per file: list of [frames_i, D]."""
        if self.embeddings is None:
            raise ValueError("this embedder produced no embeddings")
        return np.split(self.embeddings, np.cumsum(self.frames)[:-1])

    def clip_embeddings(self) -> np.ndarray:
        """One embedding per file (mean over its frames): [n, D]."""
        return np.stack([e.mean(axis=0) for e in self.per_file()]) if self.names else np.zeros((0, 0))

    def select(self, names: Sequence[str]) -> Extracted:
        """Subset/reorder by file stem or file name."""
        stems = self.stems()
        pos = {s: i for i, s in enumerate(stems)}
        pos.update({n: i for i, n in enumerate(self.names)})
        try:
            idx = [pos[n] for n in names]
        except KeyError as e:
            raise KeyError(f"{e.args[0]!r} not among the extracted files") from None
        emb = frames = None
        if self.embeddings is not None:
            parts = self.per_file()
            emb = np.concatenate([parts[i] for i in idx]) if idx else self.embeddings[:0]
            frames = self.frames[idx]
        logits = None if self.logits is None else self.logits[idx]
        return Extracted([self.names[i] for i in idx], emb, frames, logits, self.settings)


def _assemble(
    jobs: list[ChunkJob], results: dict[int, dict[str, np.ndarray]], settings, computed, reused, t0
):
    names: list[str] = []
    embs, frames, logits = [], [], []
    for job in jobs:
        r = results[job.index]
        names += [str(n) for n in r["names"]]
        if "embeddings" in r:
            embs.append(r["embeddings"])
            frames.append(r["frames"])
        if "logits" in r:
            logits.append(r["logits"])
    cat = lambda xs: np.concatenate(xs) if xs else None
    return Extracted(
        names=names,
        embeddings=cat(embs),
        frames=cat(frames),
        logits=cat(logits),
        settings=settings,
        computed=sorted(computed),
        reused=sorted(reused),
        seconds=time.perf_counter() - t0,
    )


def extract_files(
    files: Sequence[str | os.PathLike],
    embedder: Embedder | EmbedderSpec | str,
    work_dir: str | os.PathLike | None = None,
    *,
    workers: int = 1,
    chunk_size: int = 32,
    clip_seconds: float | None = None,
    progress: bool = True,
    map_chunks: Callable | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> Extracted:
    """Embed `files` (sorted by path) in resumable chunks.

    embedder: an `Embedder` (shipped to Ray workers by pickling), an `EmbedderSpec` or a registry
      name (rebuilt in each worker: one model per actor).
    work_dir: where finished chunks are kept; default
      `cache_dir()/extract/<embedder key>/<hash of the file list's directory>`.
    workers: 1 = in this process; > 1 = `map_chunks(fn, jobs, state=, setup=, workers=, on_result=)`
      runs the chunks on that many workers (`soundctm.distributed.map_chunks_ray`: a Ray actor pool;
      bind Ray's init kwargs with functools.partial).
    clip_seconds: cut/zero-pad every clip to this length (after resampling) before embedding.
    on_chunk: called with each chunk index as it is written (progress hooks, tests).
    """
    t0 = time.perf_counter()
    live, shippable = _resolve(embedder)
    key = embedder_key(live, clip_seconds)
    files = sorted(str(Path(f).resolve()) for f in files)
    if len(set(os.path.basename(f) for f in files)) != len(files):
        raise ValueError("file names must be unique (results are keyed by file name)")
    if work_dir is None:
        dirs = sorted({os.path.dirname(f) for f in files})
        work_dir = cache_dir() / "extract" / key / hashlib.sha1("\n".join(dirs).encode()).hexdigest()[:10]
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    jobs = plan_chunks(files, chunk_size, key)
    settings = dict(live.settings(), clip_seconds=clip_seconds, chunk_size=chunk_size, n_files=len(files))

    results: dict[int, dict[str, np.ndarray]] = {}
    reused, todo = [], []
    for job in jobs:
        p = work / job.filename
        if p.exists():
            try:
                results[job.index] = _load_chunk(p)
                reused.append(job.index)
                continue
            except Exception:  # a foreign/corrupt file: recompute (atomic writes make this rare)
                p.unlink(missing_ok=True)
        todo.append(job)

    bar = None
    if progress and todo:
        n_done = sum(len(j.files) for j in jobs) - sum(len(j.files) for j in todo)
        bar = tqdm(total=len(files), initial=n_done, unit="file", desc=f"embed[{live.name}]", leave=False)

    computed: list[int] = []

    def finish(job: ChunkJob, result: dict[str, np.ndarray]) -> None:
        _save_chunk(work / job.filename, job, result)
        results[job.index] = dict(result, names=np.array([os.path.basename(f) for f in job.files]))
        computed.append(job.index)
        if bar is not None:
            bar.update(len(job.files))
        if on_chunk is not None:
            on_chunk(job.index)

    try:
        if todo and workers > 1:
            if map_chunks is None:
                raise ValueError("workers > 1 needs map_chunks (e.g. soundctm.distributed.map_chunks_ray)")
            map_chunks(functools.partial(_compute_job, clip_seconds=clip_seconds), todo, state=shippable,
                       setup=_live_embedder, workers=workers, on_result=finish)
        else:
            for job in todo:
                finish(job, compute_chunk(live, job.files, clip_seconds))
    finally:
        if bar is not None:
            bar.close()
    return _assemble(jobs, results, settings, computed, reused, t0)


def extract_dir(
    directory: str | os.PathLike,
    embedder: Embedder | EmbedderSpec | str,
    work_dir: str | os.PathLike | None = None,
    **kw,
) -> Extracted:
    """`extract_files` over every audio file directly in `directory` (sorted)."""
    files = list_audio(directory)
    if not files:
        raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {directory}")
    return extract_files(files, embedder, work_dir, **kw)
