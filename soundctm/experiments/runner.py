"""The one runner: a table -> a graph of cached artifacts -> metric intervals -> claim verdicts.

Artifacts, each under a hash of everything that determines it (so tables share them; `experiments.artifacts`):

    trained model (one per run and training seed; the training programs' own run directories)
      -> generated latents  [items, C, T]       latents-<hash>.safetensors
      -> decoded audio (transient: decoded in chunks and embedded at once, never stored; `experiments.sources`)
      -> scores per item (frame embeddings, class distributions, CLAP cosines)
                                                scores-<hash>.npz (+ .json with the settings)
      -> bootstrap intervals and claim verdicts (cheap; recomputed on every run; `experiments.aggregate`)

A killed run resumes: training resumes from its checkpoints, and every finished artifact is reused. On
Ray (`workers > 1`, or `workers = 0` with a Ray cluster running or connected) every artifact node is a Ray
task (`experiments.graph`); otherwise the work runs in this process; both give the same files.

Items: unit u (a test clip), caption k < captions_per_unit, sample j < samples_per_caption;
item i = (u * K + k) * S + j gets prior noise from seed `seed + i`, so every row sees the same z_T
for the same item, and a row over several training seeds gives item i to seed number i mod n.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from soundctm import distributed
from soundctm.experiments import aggregate as G
from soundctm.experiments import applications as A
from soundctm.experiments import artifacts as K
from soundctm.experiments import measure
from soundctm.experiments import pairs as P
from soundctm.experiments.aggregate import FIDELITY, TableResult, fidelity_reference, has_fidelity
from soundctm.experiments.artifacts import cached, settings_hash, train_key
from soundctm.experiments.graph import on_worker, prepare_graph, run_graph, table_runs
from soundctm.experiments.sources import decode, generate, row_audio
from soundctm.experiments.spec import Row, Run, Table
from soundctm.experiments.stats import Bootstrap, ItemScores
from soundctm.experiments.store import Store, open_store
from soundctm.experiments.tier import Components, Tier
from soundctm.fidelity import relative_sq_error
from soundctm.metrics import functional as Fm
from soundctm.nn.text import Conditioner
from soundctm.paths import cache_dir

__all__ = ["Runner", "TableResult", "settings_hash", "prepare_graph", "table_runs"]

FORMAT = 1


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
        self.models = K.Models()
        self.store_checked = False  # (`graph.check_store`)
        self.events = None  # progress of the artifact nodes: events(kind, key, state, seconds) (`event`)
        self._comp: Components | None = None
        self._takes: list[np.ndarray] | None = None
        self._recent: dict[str, torch.Tensor] = {}  # the last latents read (`latents`: a pair's two rows)

    def event(self, kind: str, key: str, state: str, seconds: float | None = None) -> None:
        """Report an artifact node to `self.events` (e.g. `experiments.progress.Progress`): kind "train"
        (one run and seed), "score" (one row's scores), "pair" (one pair row); state "start", "done" (made or
        found by its maker, in `seconds`) or "cached" (already in the store)."""
        if self.events is not None:
            self.events(kind, key, state, seconds)

    def with_items(self, *, n_units: int | None = None, samples_per_caption: int | None = None) -> Runner:
        """This runner on another item set (a table's own, e.g. smaller, one: `Table.items`): the same tier,
        store, components and trained models; None keeps this runner's value."""
        other = type(self)(self.tier, self.cache, workers=self.workers, seed=self.seed,
                           n_units=self.n_units if n_units is None else n_units,
                           samples_per_caption=samples_per_caption or self.S, n_boot=self.n_boot,
                           store=self.artifacts.uri, log=self.log, max_retries=self.max_retries,
                           resource_wait_s=self.resource_wait_s)
        other._comp, other.models, other.events = self.comp, self.models, self.events
        return other

    # ------------------------------------------------------------------ components and items (`ItemContext`)
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
                    seeds.append(self.seed + len(unit))
                    unit.append(u)
                    caps.append(un.captions[k % len(un.captions)])
        return np.array(unit), caps, seeds

    def base_settings(self) -> dict:
        return {"format": FORMAT, "tier": self.tier.name, "identity": self.comp.identity,
                "units": [u.id for u in self.units], "K": self.K, "S": self.S, "seed": self.seed}

    def decode(self, z: torch.Tensor) -> list[np.ndarray]:
        return decode(self.comp.vae, z, self.tier.device)

    def real_takes(self) -> list[np.ndarray]:
        """Another real take per item: unit u, caption k, sample j -> take 1 + k * S + j."""
        if self._takes is None:
            unit, _, _ = self.items()
            if self.comp.retake is None:  # a tier without re-takes: the test clip itself
                self._takes = [self.units[int(u)].audio for u in unit]
            else:
                self._takes = [self.comp.retake(int(u), 1 + (i % (self.K * self.S))) for i, u in enumerate(unit)]
        return self._takes

    def latent_shape(self) -> tuple[int, int]:
        z = self.comp.vae.encode(torch.from_numpy(self.units[0].audio)[None, None].to(self.tier.device))
        return int(z.shape[1]), int(z.shape[2])

    # ------------------------------------------------------------------ models
    def exports(self, run: Run) -> list[Path]:
        """The export of every training seed of `run` (trained or resumed as needed)."""
        if run not in self.models.exports:
            teacher = self.exports(run.teacher)[0] if run.teacher is not None else None
            paths = []
            for s in run.seeds:
                self.log(f"[runner] model: {run.kind} {run.backbone} seed {s} {dict(run.options) or ''}")
                self.event("train", train_key(run, s), "start")
                t0 = time.time()
                paths.append(Path(self.tier.build(run.single(s), teacher, self.cache)))
                self.event("train", train_key(run, s), "done", time.time() - t0)
            self.models.exports[run] = paths
        return self.models.exports[run]

    def model_shas(self, run: Run) -> list[str]:
        """The checksum of the export of every training seed of `run` (part of the artifact keys)."""
        if run not in self.models.shas:
            self.models.shas[run] = [K.file_sha(p) for p in self.exports(run)]
        return self.models.shas[run]

    def model_origins(self, run: Run) -> list[str]:
        """Where each seed's export of `run` was made (its run directory, named with the run key), for the
        provenance of a table; a model trained by a Ray task is read from the store, but recorded by origin."""
        return [self.models.origin.get(run, [None] * (n + 1))[n] or str(Path(p).resolve())
                for n, p in enumerate(self.exports(run))]

    def table_runs(self, tables) -> set[Run]:
        """Every run the tables need trained on this tier (`table_runs`)."""
        return table_runs(tables, self.tier)

    def prepare_models(self, *tables: Table) -> None:
        """Train every run of the tables (`prepare_graph` without the scores): in process teachers first,
        then students; on Ray every run and seed is one "train" task, a student's as soon as its teacher's
        has landed."""
        prepare_graph([(self, list(tables))], scores=False)

    # ------------------------------------------------------------------ generation and scores
    def conditioning(self, model, captions):
        con = Conditioner.for_model(self.comp.text, model)
        return con(captions).to(self.tier.device), con.uncond.to(self.tier.device)

    def latents(self, row: Row) -> torch.Tensor:
        """Generated latents of every item of `row` [N, C, T] (cached; the last `_RECENT` rows' kept in memory, so
        a caller that takes them a chunk at a time, e.g. `pairs`, reads each file once)."""
        key = {**self.base_settings(), "row": row.generation_settings(), "models": self.model_shas(row.run),
               "code": K.code_hash(K.generation_code(row))}
        name = f"latents-{settings_hash(key)}.safetensors"
        if name not in self._recent:
            z = cached(self.artifacts, name, lambda: generate(self, row, self.exports(row.run), key["models"]),
                       K.LATENTS, key)
            self._recent = dict(list({**self._recent, name: z}.items())[-_RECENT:])
        return self._recent[name]

    def audio(self, row: Row) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
        """(waveforms, pair [N] (the unit whose real clip KL pairs with), captions) of `row`'s items."""
        return row_audio(self, row)

    def embed(self, family: str, wavs: list[np.ndarray], names: list[str]) -> dict:
        return self.comp.embedders[family].embed(wavs, self.comp.sample_rate, names=names)

    def reference_path(self) -> Path:
        key = {**self.base_settings(), "reference": True, "code": K.code_hash(K.SCORING_CODE)}
        return self.store / _scores_file(key)

    def reference(self) -> ItemScores:
        """The real test clips, one item per unit."""
        def compute():
            ev = self.embed("fd", [u.audio for u in self.units], [u.id for u in self.units])
            probs = Fm.softmax(ev["logits"]) if "logits" in ev else None
            return ItemScores(np.arange(len(self.units)), ev["embeddings"], ev["frames"], probs, None)

        return cached(self.artifacts, self.reference_path().name, compute, K.SCORES, {"reference": True})

    def scores_settings(self, row: Row) -> dict:
        gen = row.generation_settings()
        if row.source == "sampler":
            gen["models"] = self.model_shas(row.run)
        return {**self.base_settings(), "row": gen, "scores": 1,
                "code": [K.code_hash(K.SCORING_CODE), K.code_hash(K.generation_code(row))]}

    def scores_path(self, row: Row) -> Path:
        return self.store / _scores_file(self.scores_settings(row))

    def scores(self, row: Row) -> ItemScores:
        key, t0, hit = self.scores_settings(row), time.time(), []
        sc = cached(self.artifacts, _scores_file(key), lambda: self._score(row), K.SCORES, key,
                    on_hit=lambda: hit.append(True))
        self.event("score", self.score_node(row), "cached" if hit else "done", None if hit else time.time() - t0)
        return sc

    def _score(self, row: Row) -> ItemScores:
        t0 = time.time()
        self.event("score", self.score_node(row), "start")
        wavs, pair, caps = self.audio(row)
        names = [f"{i:06d}" for i in range(len(wavs))]
        ev = self.embed("fd", wavs, names)
        clap = None
        if "clap" in self.comp.embedders:
            text_emb = self.comp.embedders["clap"].embed_text(caps)
            clap = Fm.cosine_rows(text_emb, self.embed("clap", wavs, names)["embeddings"])
        probs = Fm.softmax(ev["logits"]) if "logits" in ev else None
        self.log(f"[runner]   {row.name}: scored {len(wavs)} clips ({time.time() - t0:.0f} s)")
        return ItemScores(self.items()[0], ev["embeddings"], ev["frames"], probs, clap, pair)

    def item_metric(self, row: Row, family: str) -> np.ndarray:
        """Per-item values [N] of a per-item metric family (`applications.ITEM_METRICS`) of `row` (cached)."""
        key = {**self.scores_settings(row), "item_metric": family, "app_code": K.code_hash(K.SCORING_CODE + A.APP_CODE)}
        if family == FIDELITY and (ref := fidelity_reference(row)) is not None:
            key["reference"] = {"row": ref.generation_settings(), "models": self.model_shas(ref.run)}
        compute = ((lambda: self._fidelity(row)) if family == FIDELITY
                   else (lambda: A.item_metric(self, family, self.audio(row)[0])))
        return cached(self.artifacts, f"item-{family}-{settings_hash(key)}.npy", compute, K.ARRAY)

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

    # ------------------------------------------------------------------ cost
    def timing(self, row: Row, repeats: int | None = None, *, batch: int = 1, always_uncond: bool = False,
               warmup: int = 1) -> list[float]:
        """Seconds per sample of `row` (`measure.row_timing`) with its first training seed's model."""
        return measure.row_timing(self.comp, self.exports(row.run)[0], row, self.units[0].captions[0], self.seed,
                                  self.tier.device, repeats or self.tier.timing_repeats, batch=batch,
                                  always_uncond=always_uncond, warmup=warmup)

    def timings(self, row: Row, batches: tuple[int, ...] = (1,), always_uncond: tuple[bool, ...] = (False,),
                repeats: int | None = None) -> dict[str, list[float]]:
        """`timing` for every batch size and choice of always_uncond (`measure.row_timings`)."""
        return measure.row_timings(lambda **kw: self.timing(row, repeats, **kw), row, batches, always_uncond)

    def train_memory(self, row: Row) -> tuple[list[float], str]:
        """Peak training memory of every training seed of `row`'s run (`measure.train_memory`)."""
        return measure.train_memory(self.artifacts, self.exports(row.run), self.tier.device, self.cache,
                                    self.log, row.name)

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
        rows = [r for r in table.rows if r.name not in skipped and r.source != "pair"]
        pair_rows = [r for r in table.rows if r.name not in skipped and r.source == "pair"]  # (`pairs`)
        boot = Bootstrap(len(self.units), self.n_boot, self.seed)
        dists, seconds, n_items, memory, memory_column, seed_values = {}, {}, {}, {}, None, {}
        todo = [r.name for r in rows if not self.scores_path(r).exists()]
        self.log(f"[runner] {table.name}: {len(rows)} rows on {len(self.units)} test clips x {self.K} captions x "
                 f"{self.S} samples; cached: {len(rows) - len(todo)}, to build: {len(todo)} "
                 f"({', '.join(todo) or 'none'}); skipped: {len(skipped)}")
        scored = self.score_all(rows)
        ref = self.reference() if rows else None  # (after the rows: on Ray, score_all builds it alongside them)
        for r in rows:
            sc, n_seeds = scored[r.name], len(r.run.seeds) if r.run is not None else 1
            fams = G.score_families(table, r, self.comp.embedders)
            dists[r.name], sv = G.row_dists(sc, ref, fams, boot, n_seeds, len(self.units), self.seed)
            n_items[r.name] = len(sc.unit)
            for m in G.item_families(table, r, has_fidelity(r)):  # after the embedders' families
                G.add_item_metric(dists[r.name], sv, m, on_worker(self, "score", Runner.item_metric, r, m),
                                  sc.unit, boot, n_seeds)
            if sv is not None:
                seed_values[r.name] = sv
            if r.timed:
                seconds[r.name] = on_worker(self, "timing", Runner.timing, r)
            if r.train_memory:
                memory[r.name], memory_column = on_worker(self, "train", Runner.train_memory, r)
            line = "  ".join(f"{m}={d.value:.4g}±{d.half_width():.2g}" for m, d in dists[r.name].items())
            self.log(f"[runner] {r.name:20s} {line}" + (f"  {statistics.median(seconds[r.name]):.4f} s/sample"
                                                        if r.name in seconds else ""))
        for r in pair_rows:
            pkey, t0 = self.pair_node(r, table.metrics), time.time()
            self.event("pair", pkey, "start")
            dists[r.name] = on_worker(self, "score", P.pair_dists, r, table.metrics, boot)
            n_items[r.name] = len(self.items()[0])
            self.event("pair", pkey, "done", time.time() - t0)
            self.log(f"[runner] {r.name:20s} " + "  ".join(f"{m}={d.value:.4g}±{d.half_width():.2g} (sd {d.std:.2g})"
                                                           for m, d in dists[r.name].items()))
        models = {r.name: self.model_origins(r.run) for r in rows if r.run is not None}
        models.update({r.name: [p for run in r.runs() for p in self.model_origins(run)] for r in pair_rows})
        return TableResult(table, self.tier, dists, seconds, G.verdicts(table, dists, seconds, memory),
                           G.columns(table.metrics, self.comp), n_items, models, time.time() - t_start, skipped,
                           memory, memory_column, seed_values)

    def prepare(self, tables: list[Table]) -> None:
        """Build every artifact of several tables at once (their trainings and their rows: `prepare_graph`),
        so that with workers > 1 independent work of different tables runs side by side."""
        prepare_graph([(self, list(tables))])

    def pair_node(self, row: Row, metrics) -> str:
        """The progress key of pair row `row` on this runner's items (`Runner.event`)."""
        return f"pair-{settings_hash([self.base_settings(), row.generation_settings(), list(metrics)])}"

    def prepare_rows(self, tables: list[Table]) -> list[Row]:
        """The distinct rows `prepare` scores (a pair row's two rows in its place), in table order."""
        rows, seen = [], set()
        for t in tables:
            for r in (x for row in t.score_rows for x in (row.pair if row.source == "pair" else (row,))):
                if self.skip_reason(r) is None and (key := self.score_node(r)) not in seen:
                    seen.add(key)
                    rows.append(r)
        return rows

    def score_node(self, row: Row) -> str:
        """The progress key of `row`'s scores on this runner's items (`Runner.event`): named by the settings
        that determine its models rather than by their checksums (`scores_path`), so that it is known before
        the models are trained."""
        return f"score-{settings_hash([self.base_settings(), row.generation_settings()])}"

    def score_all(self, rows: list[Row]) -> dict[str, ItemScores]:
        """Every row's scores; on Ray the missing ones (and the reference) are computed as "score" /
        "reference" tasks (each publishes its artifact to the store), then all are read back here."""
        if self.on_ray():
            run_graph(self, [], [(self, None)] + [(self, r) for r in rows])
        return {r.name: self.scores(r) for r in rows}

    def on_ray(self) -> bool:
        """Whether artifact nodes run as Ray tasks (see `workers`)."""
        if self.workers == 1:
            return False
        return self.workers > 1 or distributed.session_available()


_RECENT = 2  # latents kept in memory (`Runner.latents`)


def _scores_file(key: dict) -> str:
    """The name of a scores artifact (a row's or the reference's) with settings `key`."""
    return f"scores-{settings_hash(key)}.npz"
