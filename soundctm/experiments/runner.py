"""The one runner: a table -> a graph of cached artifacts -> metric intervals -> claim verdicts.

Artifacts, each under a hash of everything that determines it (so tables share them):

    trained model (one per run and training seed; the training programs' own run directories)
      -> generated latents  [items, C, T]       artifacts/latents-<hash>.safetensors
      -> decoded audio (transient: decoded in chunks and embedded at once, never stored)
      -> scores per item (frame embeddings, class distributions, CLAP cosines)
                                                artifacts/scores-<hash>.npz (+ .json with the settings)
      -> bootstrap intervals and claim verdicts (cheap; recomputed on every run)

A killed run resumes: training resumes from its checkpoints, and every finished artifact is
reused. On Ray (`workers > 1`, or `workers = 0` with a Ray cluster running or connected) every
artifact node is a Ray task asking for the tier's resources for its kind (`Tier.task_resources`:
"train" = one run and training seed, "score" = generate, decode and embed one row, "reference" =
embed the real clips), retried on another node when its node dies; the driver only schedules and
reads the results back. Each task publishes its artifact to the store (`--store`: a folder every
node mounts, or an s3:// / gs:// URI; `experiments.store`), trained models as
`models/<sha>.safetensors`, and records where it ran in `nodes/<artifact>.json`. Otherwise the work
runs in this process; both give the same files.

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

from soundctm import distributed
from soundctm.data.latent_cache import file_checksum
from soundctm.experiments import applications as A
from soundctm.experiments import pairs as P
from soundctm.experiments.claims import Verdict, check
from soundctm.experiments.generation import sample_row
from soundctm.experiments.spec import Row, Run, Table
from soundctm.experiments.stats import Bootstrap, Dist, ItemScores, item_mean_dist, metric_dists
from soundctm.experiments.store import Store, open_store
from soundctm.experiments.tier import TIERS, Components, Tier, get_tier
from soundctm.experiments.timing import time_call, timing_column
from soundctm.fidelity import relative_sq_error
from soundctm.io import atomic_write, load_safetensors, save_safetensors, write_json
from soundctm.metrics import functional as Fm
from soundctm.nn.text import Conditioner
from soundctm.paths import cache_dir
from soundctm.rng import prior_noise
from soundctm.train.checkpoint import load_export, read_export_metadata
from soundctm.train.config import config_from_dict
from soundctm.train.memory import MEMORY_STEPS, training_memory

__all__ = ["Runner", "TableResult", "settings_hash", "prepare_graph", "table_runs"]

FORMAT = 1
BATCH = 40  # generation batch
DECODE_BATCH = 16


def settings_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_key(run: Run, seed: int) -> str:
    """The progress key of training `run` with one seed (`Runner.event`)."""
    return f"train-{settings_hash(run.single(seed).settings())}"


_PKG = Path(__file__).resolve().parents[1]
# The code an artifact depends on: a change to any of these files re-generates (never re-trains).
GENERATION_CODE = ("edm.py", "ctm.py", "sampling.py", "rng.py", "nn", "experiments/generation.py")
SCORING_CODE = ("metrics", "audio.py", "experiments/generation.py")
FIDELITY = "fidelity"  # the per-item metric family of the teacher-ODE error (docs/fidelity.md)
REFERENCE_STEPS = 40  # the teacher's Heun solve the error is measured against (its 40-point Karras grid)


def fidelity_reference(row: Row) -> Row | None:
    """The row a sampler row's teacher-ODE error is measured against: its teacher's (a teacher row: its own
    run's) Heun solve on the 40-point grid with the row's omega, from the same z_T and caption; None for a row
    without one (a reference source, an application row)."""
    if row.source != "sampler" or A.is_app(row) or row.not_run is not None:
        return None
    teacher = row.run if row.run.kind == "teacher" else row.run.teacher
    return Row(f"{row.name}-teacher-ode", run=teacher, sampler="heun", steps=REFERENCE_STEPS, omega=row.omega)


def has_fidelity(row: Row) -> bool:
    """Whether `row` has a teacher-ODE error: a sampler row with a teacher reference, or decoded zeros (1)."""
    return row.source == "zeros" or fidelity_reference(row) is not None


def generation_code(row: Row) -> tuple[str, ...]:
    """The code a row's samples depend on: an application row's also on its application (`A.APP_CODE`), a
    consistency model's ("cm") also on its consistency function (cd.py)."""
    code = GENERATION_CODE + A.APP_CODE if A.is_app(row) else GENERATION_CODE
    return code + ("cd.py",) if row.source == "sampler" and row.sampler == "cm" else code


def table_runs(tables, tier: Tier | None = None) -> set[Run]:
    """Every run the tables need trained: their rows' runs (a pair row: its two rows'), the teachers of
    those, and, given the `tier`, the runs a table times or uses itself there (`model_runs(tier)`, e.g.
    Table 8's)."""
    runs = {run for t in tables for r in t.rows for run in r.runs()}
    if tier is not None:
        runs |= {run for t in tables if hasattr(t, "model_runs") for run in t.model_runs(tier)}
    return runs | {r.teacher for r in runs if r.teacher is not None}


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
    """Runs tables on one tier, sharing one artifact store (default `$SOUNDCTM_CACHE/<tier>/artifacts`).

    workers: 1 = everything in this process; N > 1 = Ray tasks, at most N at once (a local Ray session
      is started when no cluster is running); 0 (default) = Ray tasks when a Ray session is connected
      or a cluster is running (`ray submit`, `RAY_ADDRESS`), else in this process.
    store: a folder (on a cluster: one every node mounts at the same path) or a URI (`s3://...`,
      `gs://...`, `file://...`) through pyarrow.fs / fsspec; `self.store` is the local folder this
      process reads and writes (a URI store's local mirror).
    max_retries: how often a Ray task is run again after its worker or node died.
    """

    def __init__(self, tier: Tier, cache=None, *, workers: int = 0, seed: int = 0, n_units: int | None = None,
                 samples_per_caption: int | None = None, n_boot: int | None = None, store=None, log=print,
                 max_retries: int = 3, resource_wait_s: float | None = None):
        self.tier, self.cache, self.workers, self.seed, self.log = tier, cache, workers, seed, log
        self.n_units = n_units if n_units is not None else tier.n_units
        self.S = samples_per_caption or tier.samples_per_caption
        self.K = tier.captions_per_unit
        self.n_boot = n_boot or tier.n_boot
        root = Path(cache).expanduser() if cache is not None else cache_dir()
        self.artifacts: Store = open_store(store if store is not None else root / tier.name / "artifacts",
                                           mirror=root / "store-mirror")
        self.store = self.artifacts.local_dir
        self.max_retries, self.resource_wait_s = max_retries, resource_wait_s
        self._comp: Components | None = None
        self._exports: dict[Run, list[Path]] = {}
        self._shas: dict[Run, list[str]] = {}  # file_sha of each export (read once)
        self._origin: dict[Run, list[str]] = {}  # models trained on Ray: their training run's export
        self._store_checked = False
        self.events = None  # progress of the artifact nodes: events(kind, key, state, seconds) (`event`)

    def event(self, kind: str, key: str, state: str, seconds: float | None = None) -> None:
        """Report an artifact node to `self.events` (e.g. `experiments.progress.Progress`): kind "train"
        (one run and seed), "score" (one row's scores), "pair" (one pair row); state "start", "done" (made or
        found by its maker, in `seconds`) or "cached" (already in the store)."""
        if self.events is not None:
            self.events(kind, key, state, seconds)

    def with_items(self, *, n_units: int | None = None, samples_per_caption: int | None = None) -> Runner:
        """This runner on another item set (a table's own, e.g. smaller, one: `Table.extra["items"]`): the
        same tier, store, components and trained models; None keeps this runner's value."""
        other = Runner(self.tier, self.cache, workers=self.workers, seed=self.seed,
                       n_units=self.n_units if n_units is None else n_units,
                       samples_per_caption=samples_per_caption or self.S, n_boot=self.n_boot,
                       store=self.artifacts.uri, log=self.log, max_retries=self.max_retries,
                       resource_wait_s=self.resource_wait_s)
        other._comp, other._exports, other._shas, other._origin = self.comp, self._exports, self._shas, self._origin
        other.events = self.events
        return other

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
                self.event("train", train_key(run, s), "start")
                t0 = time.time()
                paths.append(Path(self.tier.build(run.single(s), teacher, self.cache)))
                self.event("train", train_key(run, s), "done", time.time() - t0)
            self._exports[run] = paths
        return self._exports[run]

    def model_shas(self, run: Run) -> list[str]:
        """file_sha of the export of every training seed of `run` (part of the artifact keys)."""
        if run not in self._shas:
            self._shas[run] = [file_sha(p) for p in self.exports(run)]
        return self._shas[run]

    def table_runs(self, tables) -> set[Run]:
        """Every run the tables need trained on this tier (`table_runs`)."""
        return table_runs(tables, self.tier)

    def prepare_models(self, *tables: Table) -> None:
        """Train every run of the tables (`prepare_graph` without the scores): in process teachers first,
        then students; on Ray every run and seed is one "train" task, a student's as soon as its teacher's
        has landed."""
        prepare_graph([(self, list(tables))], scores=False)

    # ------------------------------------------------------------------ generation
    def _conditioning(self, model, captions):
        con = Conditioner.for_model(self.comp.text, model)
        dev = self.tier.device
        return con(captions).to(dev), con.uncond.to(dev)

    def latents(self, row: Row) -> torch.Tensor:
        """Generated latents of every item of `row` [N, C, T] (cached)."""
        exports = self.exports(row.run)
        key_settings = {**self._base_settings(), "row": row.generation_settings(),
                        "models": self.model_shas(row.run), "code": code_hash(generation_code(row))}
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
                z = (A.app_latents(self, row, model, part, z_T, cond, uncond, model_id=key_settings["models"][m_i])
                     if A.is_app(row) else sample_row(row, model, z_T, cond, uncond, seeds=[seeds[i] for i in part])
                     ).float().cpu()
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
            if A.is_app(row):
                wavs = A.app_audio(self, row, wavs)
        elif row.source in A.APP_SOURCES:
            wavs = A.app_audio(self, row)
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

    def reference_path(self) -> Path:
        return self._scores_file({**self._base_settings(), "reference": True, "code": code_hash(SCORING_CODE)})

    def reference(self) -> ItemScores:
        """The real test clips, one item per unit."""
        path = self.reference_path()
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
            gen["models"] = self.model_shas(row.run)
        return {**self._base_settings(), "row": gen, "scores": 1,
                "code": [code_hash(SCORING_CODE), code_hash(generation_code(row))]}

    def _scores_file(self, key_settings: dict) -> Path:
        return self.store / f"scores-{settings_hash(key_settings)}.npz"

    def scores_path(self, row: Row) -> Path:
        return self._scores_file(self._scores_settings(row))

    def scores(self, row: Row) -> ItemScores:
        key_settings = self._scores_settings(row)
        path = self._scores_file(key_settings)
        if path.exists():
            self.event("score", self.score_node(row), "cached")
            return _load_scores(path)
        t0 = time.time()
        self.event("score", self.score_node(row), "start")
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
        self.event("score", self.score_node(row), "done", time.time() - t0)
        self.log(f"[runner]   {row.name}: scored {len(wavs)} clips ({time.time() - t0:.0f} s)")
        return sc

    def item_metric(self, row: Row, family: str) -> np.ndarray:
        """Per-item values [N] of a per-item metric family (`applications.ITEM_METRICS`) of `row` (cached)."""
        key = {**self._scores_settings(row), "item_metric": family, "app_code": code_hash(SCORING_CODE + A.APP_CODE)}
        if family == FIDELITY and (ref := fidelity_reference(row)) is not None:
            key["reference"] = {"row": ref.generation_settings(), "models": self.model_shas(ref.run)}
        path = self.store / f"item-{family}-{settings_hash(key)}.npy"
        if path.exists():
            return np.load(path)
        if family == FIDELITY:
            values = self._fidelity(row)
        else:
            wavs, _, _ = self.audio(row)
            values = A.item_metric(self, family, wavs)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, values)
        os.replace(tmp, path)
        return values

    def _fidelity(self, row: Row) -> np.ndarray:
        """The teacher-ODE error of every item of `row` (`soundctm.fidelity.relative_sq_error`): its latent against
        the teacher's Heun-40 latent of the same z_T, caption and omega (`fidelity_reference`); decoded zeros'
        error is 1 by definition (the trivial baseline)."""
        if row.source == "zeros":
            return np.ones(len(self.items()[0]))
        ref = fidelity_reference(row)
        if ref is None:
            raise ValueError(f"row {row.name!r}: the teacher-ODE error needs a sampler row (or decoded zeros)")
        return relative_sq_error(self.latents(row), self.latents(ref))

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
    def skip_reason(self, row: Row) -> str | None:
        """Why `row` is not run on this tier (None: it is run)."""
        if row.not_run is not None:
            return row.not_run
        if self.comp.retake is None and row.source in ("real-other", "shuffled-captions"):
            return "needs a second real take of each test clip, which this tier lacks"
        return None

    def run(self, table: Table) -> TableResult:
        t_start = time.time()
        self.prepare_models(table)
        skipped = {r.name: why for r in table.rows if (why := self.skip_reason(r)) is not None}
        rows = [r for r in table.rows if r.name not in skipped]
        pair_rows = [r for r in rows if r.source == "pair"]  # paired distances (experiments.pairs), not scored
        rows = [r for r in rows if r.source != "pair"]
        boot = Bootstrap(len(self.units), self.n_boot, self.seed)
        dists, seconds, n_items, memory, memory_column, seed_values = {}, {}, {}, {}, None, {}
        cached = [r.name for r in rows if self.scores_path(r).exists()]
        self.log(f"[runner] {table.name}: {len(rows)} rows on {len(self.units)} test clips x {self.K} captions x "
                 f"{self.S} samples; cached: {len(cached)}, to build: {len(rows) - len(cached)} "
                 f"({', '.join(r.name for r in rows if r.name not in cached) or 'none'}); skipped: {len(skipped)}")
        scored = self._score_all(rows)
        ref = self.reference() if rows else None  # (after the rows: on Ray, _score_all builds it alongside them)
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
            for m in table.metrics:  # per-item metric families (applications), after the embedders' ones
                if m in A.ITEM_METRICS and r.source != "shuffled-captions" and (m != FIDELITY or has_fidelity(r)):
                    values = self.on_worker("score", Runner.item_metric, r, m)
                    dists[r.name][m] = item_mean_dist(values, sc.unit, boot)
                    if r.name in seed_values:  # item i came from training seed number i mod n
                        k = len(r.run.seeds)
                        seed_values[r.name][m] = [float(values[j::k].mean()) for j in range(k)]
            if r.timed:
                seconds[r.name] = self.on_worker("timing", Runner.timing, r)
            if r.train_memory:
                memory[r.name], memory_column = self.on_worker("train", Runner.train_memory, r)
            line = "  ".join(f"{m}={d.value:.4g}±{d.half_width():.2g}" for m, d in dists[r.name].items())
            self.log(f"[runner] {r.name:20s} {line}" + (f"  {statistics.median(seconds[r.name]):.4f} s/sample"
                                                        if r.name in seconds else ""))
        for r in pair_rows:
            pkey = self.pair_node(r, table.metrics)
            self.event("pair", pkey, "start")
            t0 = time.time()
            dists[r.name] = self.on_worker("score", P.pair_dists, r, table.metrics, boot)
            n_items[r.name] = len(self.items()[0])
            self.event("pair", pkey, "done", time.time() - t0)
            line = "  ".join(f"{m}={d.value:.4g}±{d.half_width():.2g} (sd {d.std:.2g})"
                             for m, d in dists[r.name].items())
            self.log(f"[runner] {r.name:20s} {line}")
        verdicts = [check(c, dists, seconds, memory) for c in table.claims]
        e = self.comp.embedders
        columns = {m: f"{m.upper()}[{e[m].tag}]" if m in e else A.ITEM_METRICS[m] for m in table.metrics
                   if m in e or m in A.ITEM_METRICS}
        columns.update({m: P.column(self.comp, m) for m in table.metrics if m in P.PAIR_METRICS})
        models = {r.name: self.model_origins(r.run) for r in rows if r.run is not None}
        models.update({r.name: [p for run in r.runs() for p in self.model_origins(run)] for r in pair_rows})
        return TableResult(table, self.tier, dists, seconds, verdicts, columns, n_items, models,
                           time.time() - t_start, skipped, memory, memory_column, seed_values)

    def prepare(self, tables: list[Table]) -> None:
        """Build every artifact of several tables at once (their trainings and their rows: `prepare_graph`),
        so that with workers > 1 independent work of different tables runs side by side."""
        prepare_graph([(self, list(tables))])

    def pair_node(self, row: Row, metrics) -> str:
        """The progress key of pair row `row` on this runner's items (`Runner.event`)."""
        return f"pair-{settings_hash([self._base_settings(), row.generation_settings(), list(metrics)])}"

    def prepare_rows(self, tables: list[Table]) -> list[Row]:
        """The distinct rows `prepare` scores (a pair row's two rows in its place), in table order."""
        rows, seen = [], set()
        for t in tables:
            for r in (x for row in t.rows for x in (row.pair if row.source == "pair" else (row,))):
                if self.skip_reason(r) is None:
                    key = self.score_node(r)
                    if key not in seen:
                        seen.add(key)
                        rows.append(r)
        return rows

    def score_node(self, row: Row) -> str:
        """The progress key of `row`'s scores on this runner's items (`Runner.event`): named by the settings
        that determine its models rather than by their checksums (`scores_path`), so that it is known before
        the models are trained."""
        return f"score-{settings_hash([self._base_settings(), row.generation_settings()])}"

    def _score_all(self, rows: list[Row]) -> dict[str, ItemScores]:
        """Every row's scores; on Ray the missing ones (and the reference) are computed as "score" /
        "reference" tasks (each publishes its artifact to the store), then all are read back here."""
        if self.on_ray():
            self._score_on_ray(rows)
        return {r.name: self.scores(r) for r in rows}

    # ------------------------------------------------------------------ Ray: artifact nodes as tasks
    def on_ray(self) -> bool:
        """Whether artifact nodes run as Ray tasks (see `workers`)."""
        if self.workers == 1:
            return False
        return self.workers > 1 or distributed.session_available()

    def _run_tasks(self, kind: str, fn, args: list[tuple], on_result) -> list:
        opts = {**self.tier.task_resources(kind), "max_retries": self.max_retries}
        self._check_store()
        return distributed.run_tasks(fn, args, options=opts, limit=self.workers if self.workers > 1 else None,
                                     on_result=on_result, resource_wait_s=self.resource_wait_s)

    def _check_store(self) -> None:
        """A folder store must be visible from every node that works (a cluster needs shared storage).
        Checked once, on a running or connected cluster (a local session is one node)."""
        if self._store_checked or self._uri_store() or not distributed.session_available():
            return
        probe = f".probe-{os.getpid()}-{time.time_ns()}"
        self.artifacts.write_text(probe, "")
        try:
            missing = distributed.nodes_missing(self.store / probe)
        finally:
            (self.store / probe).unlink(missing_ok=True)
        if missing:
            raise RuntimeError(
                f"the artifact store {self.store} is not visible from Ray node(s) {', '.join(m[:8] for m in missing)}: "
                "give --store a folder every node mounts at the same path (NFS, a cloud filestore) or an "
                "s3:// / gs:// URI")
        self._store_checked = True

    def _uri_store(self) -> bool:
        """A URI store (read and written through the local mirror `self.store`), not a folder."""
        return self.artifacts.uri != str(self.store)

    def _task_spec(self) -> dict:
        """What a task needs to rebuild this runner on a worker. A registered tier travels by name, so
        that the worker evaluates it itself (PAPER's device is "cuda" where a GPU is, which the head
        lacks); any other tier (a test's, the regression's) by value."""
        cache = str(Path(self.cache).expanduser().resolve()) if self.cache is not None else None
        tier = self.tier.name if TIERS.get(self.tier.name) is self.tier else self.tier
        return {"tier": tier, "cache": cache, "seed": self.seed, "n_units": self.n_units,
                "samples_per_caption": self.S, "n_boot": self.n_boot, "store": self.artifacts.uri,
                "max_retries": self.max_retries}

    def _train_args(self, run: Run, seed: int) -> tuple:
        """The "train" task's arguments for one run and seed (its teacher trained: the driver knows its sha)."""
        t = run.teacher
        teacher = (self.model_shas(t)[0], self._origin.get(t, [None])[0]) if t is not None else (None, None)
        return (self._task_spec(), run.single(seed), *teacher)

    def _trained(self, run: Run, seed: int, res: dict, t0: float) -> None:
        """A "train" task landed: record its export (read from the store), sha and origin."""
        n = run.seeds.index(seed)
        self._exports.setdefault(run, [None] * len(run.seeds))[n] = self.store / _model_name(res["sha"])
        self._shas.setdefault(run, [None] * len(run.seeds))[n] = res["sha"]
        self._origin.setdefault(run, [None] * len(run.seeds))[n] = res["origin"]
        self.artifacts.fetch(_model_name(res["sha"]))  # (a URI store: into the mirror, for this process' own use)
        self.event("train", train_key(run, seed), "done", res.get("seconds"))
        self.log(f"[runner] model: {run.kind} {run.backbone} seed {seed} {dict(run.options) or ''}-> {res['sha']} "
                 f"(node {res['node'][:8]}, {time.time() - t0:.0f} s)")

    def _scores_name(self, row: Row | None) -> str:
        """The scores file of `row` (None: the reference) in the store."""
        return self.reference_path().name if row is None else self.scores_path(row).name

    def _score_args(self, row: Row | None) -> tuple | None:
        """The "score" ("reference": row None) task's arguments, or None when the artifact is in the store."""
        name = self._scores_name(row)
        if self.artifacts.exists(name):
            if row is not None:
                self.event("score", self.score_node(row), "cached")
            return None
        if row is not None:
            self.event("score", self.score_node(row), "start")
        models = {run: self._published(run) for run in row.runs()} if row is not None else {}
        return (self._task_spec(), models, row, name)

    def _scored(self, row: Row | None, res: dict, t0: float) -> None:
        self.artifacts.fetch(self._scores_name(row))  # (a URI store: into the local mirror; a folder: nothing to do)
        if row is not None:
            self.event("score", self.score_node(row), "done", res.get("seconds"))
        self.log(f"[runner]   {row.name if row is not None else 'reference'}: scored on node {res['node'][:8]} "
                 f"in {res['seconds']:.0f} s ({time.time() - t0:.0f} s since the first task)")

    def _score_on_ray(self, rows: list[Row]) -> None:
        _run_graph(self, [], [(self, None)] + [(self, r) for r in rows])

    def model_origins(self, run: Run) -> list[str]:
        """Where each seed's export of `run` was made (its run directory, named with the run key), for the
        provenance of a table; a model trained by a Ray task is read from the store, but recorded by origin."""
        return [self._origin.get(run, [None] * (n + 1))[n] or str(Path(p).resolve())
                for n, p in enumerate(self.exports(run))]

    def _published(self, run: Run) -> list[tuple[str, str | None]]:
        """(sha, the export's own path) of every seed of `run`, each export put into the store if missing
        (a model this process trained or found itself)."""
        out = []
        for p, sha, origin in zip(self.exports(run), self.model_shas(run), self.model_origins(run)):
            if not self.artifacts.exists(_model_name(sha)):
                self.artifacts.put_file(_model_name(sha), p)
            out.append((sha, origin))
        return out

    def on_worker(self, kind: str, fn, *args):
        """`fn(self, *args)`; on a Ray cluster (running or connected) as one `kind` task on a worker (e.g.
        "timing": the seconds are then the worker's device's, not the head's; "score": what the driver
        would otherwise generate or embed itself). Rows among `args` bring their runs' models; files the
        call writes reach the store. In process otherwise (also with a local session: one machine)."""
        if not (self.on_ray() and distributed.session_available()):
            return fn(self, *args)
        runs = {run for a in args if isinstance(a, Row) for run in a.runs()}
        models = {run: self._published(run) for run in sorted(runs, key=repr)}
        ((out, written),) = self._run_tasks(kind, _call_task, [(self._task_spec(), models, fn, args, kind)], None)
        for name in written:  # (a URI store: what the task published, for this process' own reads)
            self.artifacts.fetch(name)
        return out


def prepare_graph(plan: list[tuple[Runner, list[Table]]], *, scores: bool = True) -> None:
    """Build the artifacts of several tables, each group on its runner (`plan`: (runner, tables); the runners
    share their trained models: `Runner.with_items`): every training of the tables' runs and, with `scores`,
    every row's scores (and each item set's reference).

    On Ray (`Runner.on_ray`) this is one task graph (`distributed.run_graph`): a student's training starts
    as soon as its teacher's has landed, a row is scored as soon as its models are, trainings before scorings
    where both are ready; so no worker idles while work it could do waits for a stage. In process: the
    teachers, then the students, then each group's rows, one at a time."""
    if not plan:
        return
    head = plan[0][0]
    for r, _ in plan[1:]:
        if r._exports is not head._exports:
            raise ValueError("prepare_graph: the runners of one plan must share their trained models "
                             "(make them with Runner.with_items)")
    runs = set().union(*(r.table_runs(ts) for r, ts in plan))
    teachers = sorted((r for r in runs if r.kind == "teacher"), key=repr)
    students = sorted((r for r in runs if r.kind == "student"), key=repr)
    if not head.on_ray():
        for r in teachers + students:
            head.exports(r)
        if scores:
            for runner, ts in plan:
                runner._score_all(runner.prepare_rows(ts))
        return
    trainings = [(r, s) for r in teachers + students if r not in head._exports for s in r.seeds]
    scorings = []
    if scores:
        for runner, ts in plan:
            rows = runner.prepare_rows(ts)
            scorings += [(runner, None)] * bool(rows) + [(runner, row) for row in rows]
    _run_graph(head, trainings, scorings)


def _run_graph(head: Runner, trainings: list[tuple[Run, int]], scorings: list[tuple[Runner, Row | None]]) -> None:
    """Trainings (run, seed; a student after its teacher) and scorings (runner, row; None: that runner's
    reference) as one Ray task graph; each node's arguments are made when it is ready (`_train_args`,
    `_score_args`: an artifact already in the store needs no task)."""
    nodes, kinds, index = [], [], {}
    t0 = time.time()

    def task_options(kind: str) -> dict:
        return {**head.tier.task_resources(kind), "max_retries": head.max_retries}

    def train_args(run: Run, seed: int):
        head.event("train", train_key(run, seed), "start")
        return head._train_args(run, seed)

    for run, seed in trainings:
        deps = tuple(index[(run.teacher, s)] for s in (run.teacher.seeds if run.teacher else ())
                     if (run.teacher, s) in index)
        index[(run, seed)] = len(nodes)
        nodes.append(distributed.TaskNode(_build_task, functools.partial(train_args, run, seed), deps,
                                          task_options("train")))
        kinds.append(("train", head, (run, seed)))
    for runner, row in scorings:
        deps = tuple(index[(run, s)] for run in (row.runs() if row is not None else ()) for s in run.seeds
                     if (run, s) in index)
        kind = "reference" if row is None else "score"
        nodes.append(distributed.TaskNode(_score_task, functools.partial(runner._score_args, row), deps,
                                          task_options(kind)))
        kinds.append((kind, runner, row))
    if not nodes:
        return

    def landed(i, res):
        if res is None:  # found in the store: no task ran
            return
        kind, runner, what = kinds[i]
        if kind == "train":
            runner._trained(*what, res, t0)
        else:
            runner._scored(what, res, t0)

    n_train = len(trainings)
    head.log(f"[runner] {n_train} training(s) and {len(nodes) - n_train} scoring(s) as one Ray task graph "
             f"(train: {head.tier.task_resources('train')}, score: {head.tier.task_resources('score')} each)")
    head._check_store()
    distributed.run_graph(nodes, limit=head.workers if head.workers > 1 else None, on_result=landed,
                          resource_wait_s=head.resource_wait_s)


def _save_scores(path: Path, sc: ItemScores, settings: dict) -> None:
    """The settings sidecar first, then the scores (atomically): the .npz is the artifact's commit point."""
    arrays = {"unit": sc.unit, "pair": sc.paired_units, "frames": sc.frames, "frame_counts": sc.frame_counts}
    if sc.probs is not None:
        arrays["probs"] = sc.probs
    if sc.clap is not None:
        arrays["clap"] = sc.clap
    write_json(path.with_suffix(".json"), settings)

    def _w(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, _w)


def _load_scores(path: Path) -> ItemScores:
    with np.load(path, allow_pickle=False) as f:
        return ItemScores(f["unit"], f["frames"], f["frame_counts"], f["probs"] if "probs" in f else None,
                          f["clap"] if "clap" in f else None, f["pair"])


# ---------------------------------------------------------------------- the Ray tasks (one per artifact node)
def _model_name(sha: str) -> str:
    return f"models/{sha}.safetensors"


def _worker_runner(spec: dict) -> Runner:
    torch.set_num_threads(1)
    spec = dict(spec)
    tier = spec.pop("tier")
    return Runner(get_tier(tier) if isinstance(tier, str) else tier, spec.pop("cache"), workers=1, **spec)


class _NodeLog:
    """`nodes/<key>.json` in the store: where (Ray node, host, process) and when one task made an
    artifact, written after the artifact; `nodes/<key>.started.<node>.<pid>` when that attempt began."""

    def __init__(self, store: Store, key: str, kind: str):
        self.store, self.key, self.kind = store, key, kind
        self.where = {**(distributed.current_node() or {"node_id": "local", "ip": ""}), "pid": os.getpid(),
                      "host": os.uname().nodename}
        self.t0 = time.time()
        self.store.write_text(f"nodes/{key}.started.{self.where['node_id'][:16]}.{os.getpid()}",
                              json.dumps({**self.where, "start": self.t0}))

    def done(self, reused: bool = False, **extra) -> dict:
        """Record the task; `reused`: it found its artifact already made (in the store), and the record of
        the task that made it, if any, is kept (`reproduce/timeline.py` reads when the work was done)."""
        rec = {"key": self.key, "kind": self.kind, **self.where, "start": self.t0, "end": time.time(),
               "seconds": time.time() - self.t0, **extra}
        if not (reused and self.store.exists(f"nodes/{self.key}.json")):
            self.store.write_text(f"nodes/{self.key}.json", json.dumps(rec, indent=1))
        return {"node": rec["node_id"], "seconds": rec["seconds"], **extra}


def _local_model(store: Store, sha: str, origin: str | None) -> Path:
    """The model `sha`: its training run's own export when this node can read it (the training programs
    key students by their teacher's path, so this reuses runs trained in process), else the store's copy."""
    if origin and origin != "None" and Path(origin).is_file() and file_sha(origin) == sha:
        return Path(origin)
    p = store.fetch(_model_name(sha))
    if p is None:
        raise FileNotFoundError(f"model {sha} is not in the artifact store {store.uri}")
    return p


def _build_task(spec: dict, run: Run, teacher_sha: str | None, teacher_origin: str | None) -> dict:
    """A Ray "train" task: train (or find trained) one run with one seed, publish its export to the store
    as models/<sha>.safetensors; returns {"sha", "origin", "node", "seconds"}."""
    runner = _worker_runner(spec)
    store, tier = runner.artifacts, runner.tier
    log = _NodeLog(store, f"train-{settings_hash({'tier': tier.name, 'run': run.settings(), 'teacher': teacher_sha})}",
                   "train")
    teacher = _local_model(store, teacher_sha, teacher_origin) if teacher_sha else None
    export = Path(tier.build(run, teacher, runner.cache))
    sha = file_sha(export)
    reused = store.exists(_model_name(sha))  # trained (and published) before: this task only found it
    store.put_file(_model_name(sha), export)  # (a no-op when it is there)
    return log.done(reused=reused, artifact=_model_name(sha), sha=sha, origin=str(export.resolve()))


def _score_task(spec: dict, models: dict, row: Row | None, name: str) -> dict:
    """A Ray "score" / "reference" task: generate, decode and embed one row (row None: the real clips),
    publish the artifacts to the store; `name` is the scores file the driver expects; `models`: the
    row's run -> [(sha, path of the export where it was made)] (read from the store unless readable)."""
    runner = _worker_runner(spec)
    store = runner.artifacts
    log = _NodeLog(store, Path(name).stem, "reference" if row is None else "score")
    _adopt(runner, models)
    path = runner.reference_path() if row is None else runner.scores_path(row)
    if path.name != name:
        raise RuntimeError(f"this node computes the artifact name {path.name} where the driver expects {name}: "
                           "the driver and the workers run different code or components (install the same "
                           "version of soundctm and of its components everywhere)")
    t0 = time.time()
    if row is None:
        runner.reference()
    else:
        runner.scores(row)
    _publish_new(runner, t0, last=name)
    return log.done(artifact=name)


def _adopt(runner: Runner, models: dict) -> None:
    """Give a worker's runner the driver's models: run -> [(sha, path of the export where it was made)]."""
    for run, published in models.items():
        runner._exports[run] = [_local_model(runner.artifacts, sha, origin) for sha, origin in published]
        runner._shas[run] = [sha for sha, _ in published]


def _publish_new(runner: Runner, since: float, last: str | None = None) -> list[str]:
    """A URI store: upload the files this task wrote into the mirror, in the order written (`last` at
    the end: the artifact the driver waits for); returns their names. A folder store holds them already."""
    if not runner._uri_store() or not runner.store.is_dir():
        return []
    new = [f for f in runner.store.iterdir() if f.is_file() and not f.name.startswith(".")
           and f.stat().st_mtime >= since - 1]
    for f in sorted(new, key=lambda f: (f.name == last, f.stat().st_mtime)):
        runner.artifacts.push(f.name)
    return [f.name for f in new]


def _call_task(spec: dict, models: dict, fn, args: tuple, kind: str) -> tuple:
    """A Ray task: (`fn(runner, *args)` with a worker's runner, the files it published) (`Runner.on_worker`)."""
    runner = _worker_runner(spec)
    what = [a.name if isinstance(a, Row) else repr(a) for a in args if isinstance(a, (Row, str, int, float))]
    log = _NodeLog(runner.artifacts, f"{kind}-{getattr(fn, '__name__', 'call')}-{settings_hash(what)}", kind)
    _adopt(runner, models)
    t0 = time.time()
    out = fn(runner, *args)
    written = _publish_new(runner, t0)
    log.done(call=getattr(fn, "__qualname__", str(fn)), args=what)
    return out, written
