"""`soundctm evaluate`: FD / KL / IS / CLAP between a generated set and a reference set.

    soundctm evaluate GEN_DIR --reference REF --metrics fd,kl,is,clap --workers N \
        [--embedder-set tiny|paper] [--embedder METRIC=NAME ...] [--captions CSV] [--out results.json]

REF is a directory of audio files, an AudioCaps-layout root (`audio/` + `test.csv`), or one
AudioCaps CSV (`audiocap_id,youtube_id,start_time,caption`, audio in `<csv dir>/audio/`).
Generated and reference files are paired by file stem (the youtube_id). Every number's column
carries its embedder: `FD[tiny-evt]`, `KL[passt]`, `IS[passt]`, `CLAP[laion-clap]`.

Metric names (each computed with the embedder the set / overrides assign to it):
  fd, fd_<x>   Fréchet distance of all frame embeddings (gen vs ref).
  kid          kernel inception distance: unbiased MMD^2, kernel (x.y/d + 1)^3, of the same frame
               embeddings (no small-sample bias; can be slightly < 0 for equal distributions).
  fd_inf       FD extrapolated to infinitely many generated files (Chong & Forsyth 2020): FD of
               15 file subsets, fitted linearly in 1/N, intercept at 1/N = 0.
  kl           stable-audio-metrics KL(gen || ref) of per-clip softmax class distributions, paired.
  kl_audioldm  audioldm_eval KL(ref || gen), paired.
  is           inception score of the generated clips (mean; `IS_std[...]` alongside).
  clap         mean cosine between generated audio and its caption (needs captions).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soundctm.metrics import functional as Fm
from soundctm.metrics.extract import Extracted, extract_files, list_audio
from soundctm.metrics.refcache import reference_stats, stats_from_extracted
from soundctm.metrics.registry import EMBEDDER_SETS, Embedder, get_embedder
from soundctm.paths import MissingAssetsError
from soundctm.provenance import provenance

__all__ = [
    "METRIC_KINDS",
    "resolve_embedders",
    "resolve_reference",
    "evaluate_dirs",
    "evaluate_arrays",
]

DEFAULT_METRICS = ("fd", "kl", "is", "clap")


def _kind(metric: str) -> str:
    m = metric.lower()
    if m in ("fd_inf", "fdinf", "fd_infinity"):
        return "fd_inf"
    if m == "kid":
        return "kid"
    if m == "fd" or m.startswith("fd_"):
        return "fd"
    if m in ("kl", "kl_passt_sam", "kl_sam"):
        return "kl"
    if m in ("kl_audioldm", "kl_ref"):
        return "kl_audioldm"
    if m in ("is", "isc"):
        return "is"
    if m == "clap":
        return "clap"
    raise ValueError(
        f"unknown metric {metric!r}; known: fd, fd_<name>, kid, fd_inf, kl, kl_audioldm, is, clap"
    )


METRIC_KINDS = ("fd", "kid", "fd_inf", "kl", "kl_audioldm", "is", "clap")
_COLUMN = {
    "fd": "FD",
    "kid": "KID",
    "fd_inf": "FD_inf",
    "kl": "KL",
    "kl_audioldm": "KL_audioldm",
    "is": "IS",
    "clap": "CLAP",
}
_NEEDS_REF = ("fd", "kid", "fd_inf", "kl", "kl_audioldm")  # metrics computed against a reference set
# the exact (all pairs) KID up to this many rows per set; above it the mean over 100 subsets of 1000
KID_EXACT_MAX = 6000


def _column(metric: str, emb: Embedder) -> str:
    kind = _kind(metric)
    return f"{_COLUMN[kind]}[{emb.tag}]"


# ----------------------------------------------------------------------------- set-up
def resolve_embedders(
    metrics: Sequence[str],
    embedders: str | Mapping[str, str | Embedder] | None = "tiny",
    overrides: Mapping[str, str | Embedder] | None = None,
) -> dict[str, Embedder]:
    """metric -> Embedder. `embedders` is a set name ("tiny", "paper") or a metric -> name/instance
    mapping; `overrides` wins over both. Each distinct name is built once."""
    if embedders is None:
        embedders = "tiny"
    table: dict[str, str | Embedder] = {}
    if isinstance(embedders, str):
        if embedders not in EMBEDDER_SETS:
            raise ValueError(f"unknown embedder set {embedders!r}; expected one of {sorted(EMBEDDER_SETS)}")
        base = EMBEDDER_SETS[embedders]
        for m in metrics:
            kind = _kind(m)
            fallback = {"kl_audioldm": "kl", "kid": "fd", "fd_inf": "fd"}.get(kind, kind)
            table[m] = base.get(m) or base.get(kind) or base[fallback]
    else:
        table.update(embedders)
    table.update(overrides or {})
    built: dict[str, Embedder] = {}
    out = {}
    for m in metrics:
        if m not in table:
            raise ValueError(f"no embedder assigned to metric {m!r}")
        e = table[m]
        if isinstance(e, str):
            if e not in built:
                built[e] = get_embedder(e)
            e = built[e]
        out[m] = e
    for m, e in out.items():
        kind = _kind(m)
        need = {
            "fd": "embeddings",
            "kid": "embeddings",
            "fd_inf": "embeddings",
            "kl": "logits",
            "kl_audioldm": "logits",
            "is": "logits",
            "clap": "embeddings",
        }[kind]
        if need not in e.outputs:
            raise ValueError(f"metric {m!r} needs {need} but embedder {e.name!r} outputs {list(e.outputs)}")
        if kind == "clap" and not e.has_text:
            raise ValueError(f"metric 'clap' needs an embedder with a text tower; {e.name!r} has none")
    return out


def read_captions(path: str | os.PathLike) -> dict[str, str]:
    """file stem -> caption from a CSV with `youtube_id`+`caption` columns (AudioCaps), or
    `file_name`/`file`/`name`+`caption`. The first caption of each stem is kept."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"captions file not found: {p}")
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    key = next((k for k in ("youtube_id", "file_name", "file", "name", "id") if k in rows[0]), None)
    if key is None or "caption" not in rows[0]:
        raise ValueError(
            f"{p}: expected columns (youtube_id|file_name|file|name|id) and caption, got {list(rows[0])}"
        )
    out: dict[str, str] = {}
    for r in rows:
        out.setdefault(os.path.splitext(os.path.basename(r[key]))[0], r["caption"])
    return out


def resolve_reference(ref: str | os.PathLike, split: str = "test") -> tuple[list[Path], dict[str, str], str]:
    """(reference audio files, stem -> caption (may be empty), label for the cache file name)."""
    p = Path(ref)
    csv_path = None
    if p.is_file() and p.suffix.lower() == ".csv":
        csv_path = p
    elif p.is_dir() and (p / f"{split}.csv").exists() and (p / "audio").is_dir():
        csv_path = p / f"{split}.csv"
    if csv_path is None:
        files = list_audio(p)
        if not files:
            raise FileNotFoundError(f"no audio files in reference directory {p}")
        return files, {}, f"dir-{p.name}"
    captions = read_captions(csv_path)
    audio_dir = csv_path.parent / "audio"
    files, missing = [], []
    for stem in captions:
        f = audio_dir / f"{stem}.wav"
        (files if f.exists() else missing).append(f)
    if missing:
        raise MissingAssetsError(
            [(f"reference audio for {m.stem}", str(m)) for m in missing[:20]],
            hint=f"{len(missing)} clip(s) listed in {csv_path} have no audio file",
        )
    return sorted(files), captions, f"{csv_path.parent.name}-{csv_path.stem}"


# ----------------------------------------------------------------------------- metric core
def _compute(
    metrics: Sequence[str],
    embs: Mapping[str, Embedder],
    gen: Mapping[str, Extracted],
    ref_stats: Mapping[str, Any],
    captions: Mapping[str, str] | None,
    is_splits: int = 10,
    ref_embeddings: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """gen[embedder name] = Extracted of generated set; ref_stats[embedder name] = RefStats-like;
    ref_embeddings[embedder name] = reference frame embeddings [F, D] (for kid)."""
    out: dict[str, float] = {}
    info: dict[str, Any] = {}
    for m in metrics:
        kind, e = _kind(m), embs[m]
        g = gen[e.name]
        col = _column(m, e)
        if kind == "fd":
            r = ref_stats[e.name]
            mu, sigma = Fm.stats(g.embeddings)
            out[col] = Fm.frechet_distance(mu, sigma, r.mu, r.sigma)
            info[col] = {"gen_frames": int(len(g.embeddings)), "ref_files": len(r.names)}
        elif kind == "kid":
            if not ref_embeddings or e.name not in ref_embeddings:
                raise ValueError(f"{col}: the reference embeddings of {e.name!r} were not extracted")
            ref = ref_embeddings[e.name]
            exact = max(len(g.embeddings), len(ref)) <= KID_EXACT_MAX
            out[col] = Fm.kid(g.embeddings, ref, subsets=None if exact else 100, subset_size=1000)
            info[col] = {
                "gen_frames": int(len(g.embeddings)),
                "ref_frames": int(len(ref)),
                "estimator": "unbiased MMD^2, kernel (x.y/d+1)^3, "
                + ("all pairs" if exact else "mean of 100 subsets of 1000 frames (seed 0)"),
            }
        elif kind == "fd_inf":
            r = ref_stats[e.name]
            value, fit = Fm.fd_infinity(g.embeddings, r.mu, r.sigma, frames=g.frames, return_fit=True)
            out[col] = value
            info[col] = {"definition": "Chong & Forsyth 2020, FD_N = FD_inf + c/N over file subsets", **fit}
        elif kind in ("kl", "kl_audioldm"):
            r = ref_stats[e.name]
            ref_pos = set(r.stems())
            paired = [s for s in g.stems() if s in ref_pos]
            if not paired:
                raise ValueError(f"{col}: no generated file has a reference file of the same name")
            pg = Fm.softmax(g.select(paired).logits)
            pr = r.probs_for(paired)
            out[col] = Fm.kl_passt_sam(pg, pr) if kind == "kl" else Fm.kl_audioldm(pr, pg)
            info[col] = {
                "paired": len(paired),
                "unpaired_gen": len(g.names) - len(paired),
                "definition": "KL(gen||ref), stable-audio-metrics"
                if kind == "kl"
                else "KL(ref||gen), audioldm_eval",
            }
        elif kind == "is":
            splits = min(is_splits, len(g.names))
            mean, std = Fm.inception_score(Fm.softmax(g.logits), splits=splits)
            out[col] = mean
            out[f"IS_std[{e.tag}]"] = std
            info[col] = {"splits": splits, "seed": 2020, "n": len(g.names)}
        elif kind == "clap":
            if not captions:
                raise ValueError("the clap metric needs captions (--captions CSV or an AudioCaps reference)")
            stems = g.stems()
            missing = [s for s in stems if s not in captions]
            if missing:
                raise KeyError(f"no caption for {len(missing)} generated file(s), e.g. {missing[:5]}")
            audio = g.clip_embeddings()
            text = e.embed_text([captions[s] for s in stems])
            out[col] = Fm.clap_score(text, audio)
            info[col] = {"n": len(stems)}
    return out, info


def _provenance(embs: Mapping[str, Embedder], extra: dict) -> dict:
    seen = {e.name: e.settings() for e in embs.values()}
    return provenance(embedders=seen, metric_embedders={m: e.name for m, e in embs.items()}, **extra)


# ----------------------------------------------------------------------------- public API
def evaluate_dirs(
    gen_dir: str | os.PathLike,
    ref_dir: str | os.PathLike | None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    embedders: str | Mapping[str, str | Embedder] | None = "tiny",
    workers: int = 1,
    *,
    captions: str | os.PathLike | Mapping[str, str] | None = None,
    ref_split: str = "test",
    clip_seconds: float | None = None,
    cache: str | os.PathLike | None = None,
    work_dir: str | os.PathLike | None = None,
    chunk_size: int = 32,
    is_splits: int = 10,
    progress: bool = True,
    map_chunks=None,
) -> dict[str, Any]:
    """Evaluate the audio files in `gen_dir` against a reference.

    ref_dir: directory of audio files, AudioCaps root (`audio/` + `<ref_split>.csv`) or CSV file;
      may be None when only reference-free metrics (is, clap) are asked for.
    metrics: names (see module docstring). embedders: set name or metric -> name/Embedder.
    workers: 1 = in-process extraction; > 1 = Ray actor pool.
    captions: CSV path or stem -> caption mapping (default: the reference CSV's captions).
    clip_seconds: cut/pad every clip (gen and ref) to this length before embedding.
    cache: reference-statistics directory (default `cache_dir()/refstats`).
    work_dir: extraction work directory root (default under `cache_dir()/extract`).
    Returns {column: value, ..., "provenance": {...}}; columns like "FD[tiny-evt]".
    """

    metrics = [m.strip() for m in metrics if m.strip()]
    embs = resolve_embedders(metrics, embedders)
    gen_files = list_audio(gen_dir)
    if not gen_files:
        raise FileNotFoundError(f"no audio files in {gen_dir}")
    needs_ref = any(_kind(m) in _NEEDS_REF for m in metrics)
    ref_files: list[Path] = []
    ref_caps: dict[str, str] = {}
    ref_label = None
    if ref_dir is not None:
        ref_files, ref_caps, ref_label = resolve_reference(ref_dir, ref_split)
    elif needs_ref:
        raise ValueError("fd/kid/fd_inf/kl need a reference (--reference)")
    if isinstance(captions, (str, os.PathLike)):
        caps = read_captions(captions)
    elif captions is not None:
        caps = dict(captions)
    else:
        caps = ref_caps

    extract_kw = dict(
        workers=workers,
        chunk_size=chunk_size,
        clip_seconds=clip_seconds,
        progress=progress,
        map_chunks=map_chunks,
    )
    gen: dict[str, Extracted] = {}
    refs: dict[str, Any] = {}
    ref_embs: dict[str, np.ndarray] = {}
    for m, e in embs.items():
        if e.name not in gen:
            wd = None if work_dir is None else Path(work_dir) / "gen" / e.name
            gen[e.name] = extract_files(gen_files, e, wd, **extract_kw)
        if _kind(m) in _NEEDS_REF and e.name not in refs:
            wd = None if work_dir is None else Path(work_dir) / "ref" / e.name
            refs[e.name] = reference_stats(
                ref_files, e, split=ref_label, cache=cache, work_dir=wd, **extract_kw
            )
        if _kind(m) == "kid" and e.name not in ref_embs:  # KID needs the frames, not just mu/sigma
            wd = None if work_dir is None else Path(work_dir) / "ref" / e.name
            ref_embs[e.name] = extract_files(ref_files, e, wd, **extract_kw).embeddings
    values, info = _compute(metrics, embs, gen, refs, caps, is_splits, ref_embs)
    values["provenance"] = _provenance(
        embs,
        {
            "gen_dir": str(Path(gen_dir).resolve()),
            "reference": None if ref_dir is None else str(Path(ref_dir).resolve()),
            "n_gen": len(gen_files),
            "n_ref": len(ref_files),
            "clip_seconds": clip_seconds,
            "workers": workers,
            "details": info,
            "ref_stats_files": {k: str(v.path) for k, v in refs.items() if getattr(v, "path", None)},
        },
    )
    return values


class _ArrayRef:
    def __init__(self, ext: Extracted):
        self.mu, self.sigma, self.probs = stats_from_extracted(ext)
        self.embeddings = ext.embeddings
        self.names = ext.names
        self.path = None

    def stems(self):
        return list(self.names)

    def probs_for(self, stems):
        pos = {s: i for i, s in enumerate(self.names)}
        return self.probs[[pos[s] for s in stems]]


def _extract_arrays(e: Embedder, wavs, sample_rate: int, names: list[str]) -> Extracted:
    out = e.embed(wavs, sample_rate, names=names)
    return Extracted(names, out.get("embeddings"), out.get("frames"), out.get("logits"), e.settings())


def evaluate_arrays(
    gen_wavs,
    ref_wavs=None,
    captions: Sequence[str] | None = None,
    sample_rate: int = 16000,
    metrics: Sequence[str] = DEFAULT_METRICS,
    embedders: str | Mapping[str, str | Embedder] | None = "tiny",
    *,
    names: Sequence[str] | None = None,
    is_splits: int = 10,
) -> dict[str, Any]:
    """In-memory evaluation; clip i of `gen_wavs` pairs with clip i of `ref_wavs` and `captions[i]`.

    gen_wavs / ref_wavs: lists of [N] (or [C, N]) arrays, or [B, N] arrays/tensors, at `sample_rate`
    (ref_wavs may have a different count; only the first min(len) pair up for KL).
    Returns the same columns as `evaluate_dirs` (+ "provenance").
    """
    metrics = [m.strip() for m in metrics if m.strip()]
    embs = resolve_embedders(metrics, embedders)
    n_gen = len(gen_wavs)
    gnames = list(names) if names is not None else [f"{i:06d}" for i in range(n_gen)]
    caps = None if captions is None else dict(zip(gnames, captions))
    gen, refs = {}, {}
    for m, e in embs.items():
        if e.name not in gen:
            gen[e.name] = _extract_arrays(e, gen_wavs, sample_rate, gnames)
        if _kind(m) in _NEEDS_REF and e.name not in refs:
            if ref_wavs is None:
                raise ValueError(f"metric {m!r} needs ref_wavs")
            rnames = gnames[: len(ref_wavs)] + [f"ref{i:06d}" for i in range(len(gnames), len(ref_wavs))]
            refs[e.name] = _ArrayRef(_extract_arrays(e, ref_wavs, sample_rate, rnames))
    ref_embs = {k: r.embeddings for k, r in refs.items() if r.embeddings is not None}
    values, info = _compute(metrics, embs, gen, refs, caps, is_splits, ref_embs)
    values["provenance"] = _provenance(
        embs,
        {
            "n_gen": n_gen,
            "n_ref": 0 if ref_wavs is None else len(ref_wavs),
            "sample_rate": sample_rate,
            "details": info,
        },
    )
    return values


def format_table(results: Mapping[str, Any]) -> str:
    rows = [(k, v) for k, v in results.items() if k != "provenance"]
    w = max([len(k) for k, _ in rows] + [6])
    lines = [f"{'metric':<{w}}  value", f"{'-' * w}  {'-' * 12}"]
    lines += [f"{k:<{w}}  {v:.6g}" for k, v in rows]
    return "\n".join(lines)
