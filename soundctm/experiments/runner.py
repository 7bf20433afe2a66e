"""The one runner: a table -> a graph of cached artifacts -> metric intervals -> claim verdicts.

Artifacts, each under a hash of everything that determines it (so tables share them):

    trained model (one per run and training seed; the training programs' own run directories)
      -> generated latents  [items, C, T]       artifacts/latents-<hash>.safetensors
      -> decoded audio (transient: decoded in chunks and embedded at once, never stored)
      -> scores per item (frame embeddings, class distributions, CLAP cosines)
                                                artifacts/scores-<hash>.npz (+ .json with the settings)
      -> bootstrap intervals and claim verdicts (cheap; recomputed on every run)

A killed run resumes: training resumes from its checkpoints, and every finished artifact is
reused. With `workers > 1` the independent trainings of one stage and the rows' scoring run as
Ray tasks (`soundctm.distributed.map_tasks`), otherwise in this process; both give the same files.

Items: unit u (a test clip), caption k < captions_per_unit, sample j < samples_per_caption;
item i = (u * K + k) * S + j gets prior noise from seed `seed + i`, so every row sees the same z_T
for the same item, and a row over several training seeds gives item i to seed number i mod n.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from soundctm.data.latent_cache import file_checksum
from soundctm.distributed import map_tasks
from soundctm.experiments.claims import Verdict, check
from soundctm.experiments.generation import sample_row
from soundctm.experiments.spec import Row, Run, Table
from soundctm.experiments.stats import Bootstrap, Dist, ItemScores, metric_dists
from soundctm.experiments.tier import Components, Tier
from soundctm.experiments.timing import time_call, timing_column
from soundctm.io import load_safetensors, save_safetensors, write_json
from soundctm.metrics import functional as Fm
from soundctm.nn.text import Conditioner
from soundctm.paths import cache_dir
from soundctm.rng import prior_noise
from soundctm.train.checkpoint import load_export, read_export_metadata
from soundctm.train.config import config_from_dict
from soundctm.train.memory import MEMORY_STEPS, training_memory

__all__ = ["Runner", "TableResult", "settings_hash"]

FORMAT = 1
BATCH = 40  # generation batch
DECODE_BATCH = 16


def settings_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


_PKG = Path(__file__).resolve().parents[1]
# The code an artifact depends on: a change to any of these files re-generates (never re-trains).
GENERATION_CODE = ("edm.py", "ctm.py", "sampling.py", "rng.py", "nn", "experiments/generation.py")
SCORING_CODE = ("metrics", "audio.py", "experiments/generation.py")


@functools.cache
def code_hash(parts: tuple[str, ...]) -> str:
    """Hash of the package sources in `parts` (files or folders relative to soundctm/); read once per process."""
    h = hashlib.sha256()
    for part in parts:
        p = _PKG / part
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(str(f.relative_to(_PKG)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def file_sha(path: str | os.PathLike) -> str:

    return file_checksum(path)


@dataclass
class TableResult:
    table: Table
    tier: Tier
    dists: dict[str, dict[str, Dist]]
    seconds: dict[str, list[float]]
    verdicts: list[Verdict]
    columns: dict[str, str]  # metric family -> column name, e.g. "fd" -> "FD[tiny-evt]"
    n_items: dict[str, int]
    models: dict[str, list[str]]
    wall_seconds: float
    skipped: dict[str, str] = field(default_factory=dict)
    memory: dict[str, list[float]] = field(default_factory=dict)  # MiB per training seed (`Row.train_memory`)
    memory_column: str | None = None
    # rows over several training seeds: each metric's value on the items of each seed (seed-to-seed spread)
    seed_values: dict[str, dict[str, list[float]]] = field(default_factory=dict)


class Runner:
    """Runs tables on one tier, sharing one artifact store (default `$SOUNDCTM_CACHE/<tier>/artifacts`)."""

    def __init__(self, tier: Tier, cache=None, *, workers: int = 0, seed: int = 0, n_units: int | None = None,
                 samples_per_caption: int | None = None, n_boot: int | None = None, store=None, log=print):
        self.tier, self.cache, self.workers, self.seed, self.log = tier, cache, workers, seed, log
        self.n_units = n_units if n_units is not None else tier.n_units
        self.S = samples_per_caption or tier.samples_per_caption
        self.K = tier.captions_per_unit
        self.n_boot = n_boot or tier.n_boot
        root = Path(cache).expanduser() if cache is not None else cache_dir()
        self.store = Path(store) if store is not None else root / tier.name / "artifacts"
        self._comp: Components | None = None
        self._exports: dict[Run, list[Path]] = {}

    # ------------------------------------------------------------------ components and items
    @property
    def comp(self) -> Components:
        if self._comp is None:
            self.log(f"[runner] {self.tier.name} tier: loading components ...")
            self._comp = self.tier.on_device(self.tier.load(self.cache))
        return self._comp

    @property
    def units(self):
        u = self.comp.units
        return u if self.n_units is None else u[: self.n_units]

    def items(self) -> tuple[np.ndarray, list[str], list[int]]:
        """(unit [N], caption [N], seed [N]) of every item, in item order."""
        unit, caps, seeds = [], [], []
        for u, un in enumerate(self.units):
            for k in range(self.K):
                for _j in range(self.S):
                    i = len(unit)
                    unit.append(u)
                    caps.append(un.captions[k % len(un.captions)])
                    seeds.append(self.seed + i)
        return np.array(unit), caps, seeds

    def _base_settings(self) -> dict:
        return {"format": FORMAT, "tier": self.tier.name, "identity": self.comp.identity,
                "units": [u.id for u in self.units], "K": self.K, "S": self.S, "seed": self.seed}

    # ------------------------------------------------------------------ models
    def exports(self, run: Run) -> list[Path]:
        """The export of every training seed of `run` (trained or resumed as needed)."""
        if run not in self._exports:
            teacher = self.exports(run.teacher)[0] if run.teacher is not None else None
            paths = []
            for s in run.seeds:
                self.log(f"[runner] model: {run.kind} {run.backbone} seed {s} {dict(run.options) or ''}")
                paths.append(Path(self.tier.build(run.single(s), teacher, self.cache)))
            self._exports[run] = paths
        return self._exports[run]

    def prepare_models(self, *tables: Table) -> None:
        """Train every run of the tables: teachers first, then students (independent runs in parallel)."""
        runs = {r.run for t in tables for r in t.rows if r.run is not None and r.not_run is None}
        teachers = {r.teacher for r in runs if r.teacher is not None} | {r for r in runs if r.kind == "teacher"}
        students = {r for r in runs if r.kind == "student"}
        for stage in (sorted(teachers, key=repr), sorted(students, key=repr)):
            jobs = [(r, s) for r in stage for s in r.seeds if r not in self._exports]
            if self.workers > 1 and len(jobs) > 1:
                teacher_of = {r: (self.exports(r.teacher)[0] if r.teacher else None) for r, _ in jobs}
                args = [(self.tier, r.single(s), teacher_of[r], self.cache) for r, s in jobs]
                paths = map_tasks(_build_task, args, workers=self.workers)
                for (r, s), p in zip(jobs, paths):
                    self._exports.setdefault(r, [None] * len(r.seeds))[r.seeds.index(s)] = Path(p)
            for r in stage:
                self.exports(r)

    # ------------------------------------------------------------------ generation
    def _conditioning(self, model, captions):
        con = Conditioner.for_model(self.comp.text, model)
        dev = self.tier.device
        return con(captions).to(dev), con.uncond.to(dev)

    def latents(self, row: Row) -> torch.Tensor:
        """Generated latents of every item of `row` [N, C, T] (cached)."""
        exports = self.exports(row.run)
        key_settings = {**self._base_settings(), "row": row.generation_settings(),
                        "models": [file_sha(p) for p in exports], "code": code_hash(GENERATION_CODE)}
        path = self.store / f"latents-{settings_hash(key_settings)}.safetensors"
        if path.exists():
            return load_safetensors(path)[0]["z"]
        models = [load_export(p, self.tier.device) for p in exports]
        unit, caps, seeds = self.items()
        n = len(unit)
        out = [None] * n
        t0 = time.time()
        for m_i, model in enumerate(models):
            idx = [i for i in range(n) if i % len(models) == m_i]
            for b in range(0, len(idx), BATCH):
                part = idx[b : b + BATCH]
                cond, uncond = self._conditioning(model, [caps[i] for i in part])
                z_T = prior_noise([seeds[i] for i in part], tuple(model.latent_shape), device=self.tier.device)
                z = sample_row(row, model, z_T, cond, uncond).float().cpu()
                for i, zi in zip(part, z):
                    out[i] = zi
                self.log(f"[runner]   {row.name}: {sum(x is not None for x in out)}/{n} latents "
                         f"({time.time() - t0:.0f} s)")
        z = torch.stack(out)
        save_safetensors(path, {"z": z}, {"settings": key_settings})
        return z

    @torch.no_grad()
    def _decode(self, z: torch.Tensor) -> list[np.ndarray]:
        vae = self.comp.vae
        dev = self.tier.device
        return [w for i in range(0, len(z), DECODE_BATCH)
                for w in vae.decode(z[i : i + DECODE_BATCH].to(dev)).float()[:, 0].cpu().numpy()]

    def _real_takes(self) -> list[np.ndarray]:
        """Another real take per item: unit u, caption k, sample j -> take 1 + k * S + j."""
        unit, _, _ = self.items()
        if self.comp.retake is None:  # a tier without re-takes: the test clip itself
            return [self.units[int(u)].audio for u in unit]
        return [self.comp.retake(int(u), 1 + (i % (self.K * self.S))) for i, u in enumerate(unit)]

    def audio(self, row: Row) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
        """(waveforms, pair [N] (the unit whose real clip KL pairs with), captions) of `row`'s items."""
        unit, caps, seeds = self.items()
        pair = unit.copy()
        if row.source == "sampler":
            wavs = self._decode(self.latents(row))
        elif row.source == "zeros":
            c, t = self.latent_shape()
            one = self._decode(torch.zeros(1, c, t, device=self.tier.device))[0]
            wavs = [one] * len(unit)
        elif row.source == "noise":
            c, t = self.latent_shape()
            sd = float(self.comp.vae.sigma_data)  # latents are normalised to N(0, sigma_data^2) per channel
            wavs = self._decode(prior_noise([s + 10_000_019 for s in seeds], (c, t), sigma_max=sd,
                                             device=self.tier.device))
        elif row.source == "real-other":
            wavs = self._real_takes()
        elif row.source == "vae-recon":
            takes = self._real_takes()
            vae = self.comp.vae
            with torch.no_grad():
                x = torch.from_numpy(np.stack(takes))[:, None]
                z = torch.cat([vae.encode(x[i : i + DECODE_BATCH].to(self.tier.device)).cpu()
                               for i in range(0, len(x), DECODE_BATCH)])
            wavs = self._decode(z)
        elif row.source == "shuffled-captions":
            wavs = self._real_takes()
            n_u = len(self.units)
            pair = (unit + n_u // 2) % n_u
            caps = [self.units[int(p)].captions[(i // self.S) % self.K] for i, p in enumerate(pair)]
        else:
            raise ValueError(f"unknown source {row.source!r}")
        return wavs, pair, caps

    def latent_shape(self) -> tuple[int, int]:
        z = self.comp.vae.encode(torch.from_numpy(self.units[0].audio)[None, None].to(self.tier.device))
        return int(z.shape[1]), int(z.shape[2])

    # ------------------------------------------------------------------ scores
    def _embed(self, family: str, wavs: list[np.ndarray], names: list[str]) -> dict:
        e = self.comp.embedders[family]
        return e.embed(wavs, self.comp.sample_rate, names=names)

    def reference(self) -> ItemScores:
        """The real test clips, one item per unit."""
        path = self._scores_file({**self._base_settings(), "reference": True, "code": code_hash(SCORING_CODE)})
        if path.exists():
            return _load_scores(path)
        wavs = [u.audio for u in self.units]
        n = len(wavs)
        ev = self._embed("fd", wavs, [u.id for u in self.units])
        sc = ItemScores(np.arange(n), ev["embeddings"], ev["frames"], Fm.softmax(ev["logits"]) if "logits" in ev
                        else None, None)
        _save_scores(path, sc, {"reference": True})
        return sc

    def _scores_settings(self, row: Row) -> dict:
        gen = row.generation_settings()
        if row.source == "sampler":
            gen["models"] = [file_sha(p) for p in self.exports(row.run)]
        return {**self._base_settings(), "row": gen, "scores": 1,
                "code": [code_hash(SCORING_CODE), code_hash(GENERATION_CODE)]}

    def _scores_file(self, key_settings: dict) -> Path:
        return self.store / f"scores-{settings_hash(key_settings)}.npz"

    def scores_path(self, row: Row) -> Path:
        return self._scores_file(self._scores_settings(row))

    def scores(self, row: Row) -> ItemScores:
        key_settings = self._scores_settings(row)
        path = self._scores_file(key_settings)
        if path.exists():
            return _load_scores(path)
        t0 = time.time()
        wavs, pair, caps = self.audio(row)
        names = [f"{i:06d}" for i in range(len(wavs))]
        ev = self._embed("fd", wavs, names)
        probs = Fm.softmax(ev["logits"]) if "logits" in ev else None
        clap = None
        if "clap" in self.comp.embedders:
            ce = self.comp.embedders["clap"]
            audio_emb = self._embed("clap", wavs, names)["embeddings"]
            text_emb = ce.embed_text(caps)
            clap = Fm.cosine_rows(text_emb, audio_emb)
        unit, _, _ = self.items()
        sc = ItemScores(unit, ev["embeddings"], ev["frames"], probs, clap, pair)
        _save_scores(path, sc, key_settings)
        self.log(f"[runner]   {row.name}: scored {len(wavs)} clips ({time.time() - t0:.0f} s)")
        return sc

    # ------------------------------------------------------------------ timing
    def timing(self, row: Row, repeats: int | None = None, *, batch: int = 1, always_uncond: bool = False,
               warmup: int = 1) -> list[float]:
        """Seconds per sample of generating `batch` samples at once: prior noise (drawn on the tier's device),
        the row's sampler, VAE decode; the conditioning is computed once, outside the timing. One value per
        repeat after `warmup` untimed calls; on CUDA every call is synchronised (`timing.time_call`).
        `always_uncond`: the student evaluates the unconditional branch even at nu = 1 (the official sampler)."""
        repeats = repeats or self.tier.timing_repeats
        dev = self.tier.device
        model = load_export(self.exports(row.run)[0], dev)
        cond, uncond = self._conditioning(model, [self.units[0].captions[0]] * batch)
        seeds = [self.seed + i for i in range(batch)]
        vae = self.comp.vae

        def once():
            z_T = prior_noise(seeds, tuple(model.latent_shape), device=dev, generator_device=None)
            vae.decode(sample_row(row, model, z_T, cond, uncond, always_uncond=always_uncond))

        with torch.no_grad():
            return [t / batch for t in time_call(once, dev, repeats, warmup)]

    def timings(self, row: Row, batches: tuple[int, ...] = (1,), always_uncond: tuple[bool, ...] = (False,),
                repeats: int | None = None) -> dict[str, list[float]]:
        """`timing` for every batch size and choice of always_uncond, keyed by its column name
        (`timing.timing_column`); always_uncond=True is timed only where it changes the work (a student row at
        nu = 1)."""
        out = {}
        for b in batches:
            for au in always_uncond:
                if au and not (row.sampler == "ctm" and row.nu == 1.0):
                    continue
                out[timing_column(b, au)] = self.timing(row, repeats, batch=b, always_uncond=au)
        return out

    # ------------------------------------------------------------------ training memory
    def train_memory(self, row: Row) -> tuple[list[float], str]:
        """Peak training memory (MiB) of every training seed of `row`'s run, each measured in a fresh
        process over a few steps of the exact settings it was trained with (`train.memory`), cached.
        Returns (values, what they are)."""
        out, what = [], None
        for p in self.exports(row.run):
            cfg = config_from_dict(read_export_metadata(p)["train_config"])
            key = {"memory": 1, "model": file_sha(p), "steps": MEMORY_STEPS, "device": self.tier.device}
            path = self.store / f"memory-{settings_hash(key)}.json"
            if path.exists():
                rec = json.loads(path.read_text())
            else:
                self.log(f"[runner]   {row.name}: measuring training memory of {p.parent.name} ...")
                cfg = dataclasses.replace(cfg, device=self.tier.device, cache=str(self.cache) if self.cache else None)
                rec = {**training_memory(cfg), "settings": key}
                write_json(path, rec)
            if "cuda_max_allocated_mib" in rec:
                out.append(rec["cuda_max_allocated_mib"])
                what = "train memory MiB (CUDA max allocated)"
            else:
                out.append(rec["train_rss_mib"])
                what = f"train memory MiB (CPU peak RSS added, batch {rec['batch_size']})"
        return out, what

    # ------------------------------------------------------------------ a table
    def run(self, table: Table) -> TableResult:
        t_start = time.time()
        self.prepare_models(table)
        ref = self.reference()
        skipped = {r.name: r.not_run for r in table.rows if r.not_run is not None}
        if self.comp.retake is None:
            skipped.update({r.name: "needs a second real take of each test clip, which this tier lacks"
                            for r in table.rows if r.source in ("real-other", "shuffled-captions")})
        rows = [r for r in table.rows if r.name not in skipped]
        boot = Bootstrap(len(self.units), self.n_boot, self.seed)
        dists, seconds, n_items, memory, memory_column, seed_values = {}, {}, {}, {}, None, {}
        cached = [r.name for r in rows if self.scores_path(r).exists()]
        self.log(f"[runner] {table.name}: {len(rows)} rows on {len(self.units)} test clips x {self.K} captions x "
                 f"{self.S} samples; cached: {len(cached)}, to build: {len(rows) - len(cached)} "
                 f"({', '.join(r.name for r in rows if r.name not in cached) or 'none'}); skipped: {len(skipped)}")
        scored = self._score_all(rows)
        for r in rows:
            sc = scored[r.name]
            fams = [m for m in table.metrics if m in self.comp.embedders]
            if r.source == "shuffled-captions":  # the same audio as real-other: only the text-aware metrics
                fams = [m for m in fams if m in ("kl", "clap")]
            dists[r.name] = metric_dists(sc, ref, fams, boot)
            n_items[r.name] = len(sc.unit)
            if r.run is not None and len(r.run.seeds) > 1:
                seed_of = np.arange(len(sc.unit)) % len(r.run.seeds)  # item i came from seed number i mod n
                one = Bootstrap(len(self.units), 2, self.seed)
                per = [metric_dists(sc.subset(seed_of == k), ref, fams, one) for k in range(len(r.run.seeds))]
                seed_values[r.name] = {m: [p[m].value for p in per] for m in dists[r.name]}
            if r.timed:
                seconds[r.name] = self.timing(r)
            if r.train_memory:
                memory[r.name], memory_column = self.train_memory(r)
            line = "  ".join(f"{m}={d.value:.4g}±{d.half_width():.2g}" for m, d in dists[r.name].items())
            self.log(f"[runner] {r.name:20s} {line}" + (f"  {statistics.median(seconds[r.name]):.4f} s/sample"
                                                        if r.name in seconds else ""))
        verdicts = [check(c, dists, seconds, memory) for c in table.claims]
        e = self.comp.embedders
        columns = {m: f"{m.upper()}[{e[m].tag}]" for m in table.metrics if m in e}
        models = {r.name: [str(p) for p in self.exports(r.run)] for r in rows if r.run is not None}
        return TableResult(table, self.tier, dists, seconds, verdicts, columns, n_items, models,
                           time.time() - t_start, skipped, memory, memory_column, seed_values)

    def prepare(self, tables: list[Table]) -> None:
        """Build every artifact of several tables at once (all their trainings, then all their rows), so
        that with workers > 1 independent work of different tables runs side by side."""
        self.prepare_models(*tables)
        rows, seen = [], set()
        for t in tables:
            for r in t.rows:
                if r.not_run is None and (r.source == "sampler" or self.comp.retake is not None
                                          or r.source not in ("real-other", "shuffled-captions")):
                    p = self.scores_path(r)
                    if p not in seen:
                        seen.add(p)
                        rows.append(r)
        self._score_all(rows)

    def _score_all(self, rows: list[Row]) -> dict[str, ItemScores]:
        """Every row's scores; with workers > 1 the missing ones are computed as Ray tasks (each writes
        its artifact to the shared store), then all are read back in this process."""
        if self.workers > 1:
            todo = [r for r in rows if not self.scores_path(r).exists()]
            args = [(self.tier, self.cache, self.seed, self.n_units, self.S, self.n_boot, str(self.store), r)
                    for r in todo]
            map_tasks(_score_task, args, workers=self.workers)
        return {r.name: self.scores(r) for r in rows}


def _save_scores(path: Path, sc: ItemScores, settings: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    arrays = {"unit": sc.unit, "pair": sc.paired_units, "frames": sc.frames, "frame_counts": sc.frame_counts}
    if sc.probs is not None:
        arrays["probs"] = sc.probs
    if sc.clap is not None:
        arrays["clap"] = sc.clap
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    write_json(path.with_suffix(".json"), settings)


def _load_scores(path: Path) -> ItemScores:
    with np.load(path, allow_pickle=False) as f:
        return ItemScores(f["unit"], f["frames"], f["frame_counts"], f["probs"] if "probs" in f else None,
                          f["clap"] if "clap" in f else None, f["pair"])


def _score_task(tier: Tier, cache, seed, n_units, S, n_boot, store, row: Row) -> str:
    """A Ray task: score one row into the shared artifact store (the tier travels by value)."""
    torch.set_num_threads(1)
    r = Runner(tier, cache, seed=seed, n_units=n_units, samples_per_caption=S, n_boot=n_boot,
               store=store)
    r.scores(row)
    return str(r.scores_path(row))


def _build_task(tier: Tier, run: Run, teacher_export, cache) -> str:
    """A Ray task: train one run (one seed) of a tier (which travels by value); returns its export path."""
    torch.set_num_threads(1)
    return str(tier.build(run, teacher_export, cache))
