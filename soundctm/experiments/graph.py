"""The task graph: trainings and scorings of several tables as one Ray graph, and the Ray tasks themselves.

On Ray (`Runner.on_ray`) every artifact node is a Ray task asking for the tier's resources for its kind
(`Tier.task_resources`: "train" = one run and training seed, "score" = generate, decode and embed one row,
"reference" = embed the real clips), retried on another node when its node dies; the driver only schedules
and reads the results back. Each task publishes what it makes to the store: trained models as
`models/<sha>.safetensors`, every other artifact as `artifacts.cached` writes it, and records where it ran in
`nodes/<artifact>.json`. The driver sends each task everything it needs (its models by checksum, its runner's
settings) and the name of the artifact it expects; a worker whose code or components name it differently
refuses, rather than writing an artifact the driver would not find.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import torch

from soundctm import distributed
from soundctm.experiments.artifacts import file_sha, model_name, settings_hash, train_key
from soundctm.experiments.spec import Row, Run, Table
from soundctm.experiments.store import Store
from soundctm.experiments.tier import TIERS, Tier, get_tier

__all__ = ["prepare_graph", "run_graph", "on_worker", "check_store", "table_runs"]


# ---------------------------------------------------------------------- the driver's side
def table_runs(tables, tier: Tier | None = None) -> set[Run]:
    """Every run the tables need trained on `tier` (`Experiment.model_runs`: a table's rows' runs, a speed
    table's timed systems; None: what they need on any tier) and the teachers of those."""
    runs = {run for t in tables for run in t.model_runs(tier)}
    return runs | {r.teacher for r in runs if r.teacher is not None}


def check_store(runner) -> None:
    """A folder store must be visible from every node that works (a cluster needs shared storage).
    Checked once, on a running or connected cluster (a local session is one node)."""
    if runner.store_checked or runner.artifacts.mirrored or not distributed.session_available():
        return
    probe = f".probe-{os.getpid()}-{time.time_ns()}"
    runner.artifacts.write_text(probe, "")
    try:
        missing = distributed.nodes_missing(runner.store / probe)
    finally:
        (runner.store / probe).unlink(missing_ok=True)
    if missing:
        raise RuntimeError(
            f"the artifact store {runner.store} is not visible from Ray node(s) {', '.join(m[:8] for m in missing)}: "
            "give --store a folder every node mounts at the same path (NFS, a cloud filestore) or an "
            "s3:// / gs:// URI")
    runner.store_checked = True


def task_spec(runner) -> dict:
    """What a task needs to rebuild `runner` on a worker. A registered tier travels by name, so that the
    worker evaluates it itself (PAPER's device is "cuda" where a GPU is, which the head lacks); any other tier
    (a test's, the regression's) by value."""
    cache = str(Path(runner.cache).expanduser().resolve()) if runner.cache is not None else None
    tier = runner.tier.name if TIERS.get(runner.tier.name) is runner.tier else runner.tier
    return {"cls": type(runner), "tier": tier, "cache": cache, "seed": runner.seed, "n_units": runner.n_units,
            "samples_per_caption": runner.S, "n_boot": runner.n_boot, "store": runner.artifacts.uri,
            "max_retries": runner.max_retries}


def published(runner, run: Run) -> list[tuple[str, str | None]]:
    """(sha, the export's own path) of every seed of `run`, each export put into the store if missing
    (a model this process trained or found itself)."""
    out = []
    for p, sha, origin in zip(runner.exports(run), runner.model_shas(run), runner.model_origins(run)):
        if not runner.artifacts.exists(model_name(sha)):
            runner.artifacts.put_file(model_name(sha), p)
        out.append((sha, origin))
    return out


def on_worker(runner, kind: str, fn, *args):
    """`fn(runner, *args)`; on a Ray cluster (running or connected) as one `kind` task on a worker (e.g.
    "timing": the seconds are then the worker's device's, not the head's; "score": what the driver would
    otherwise generate or embed itself). Rows among `args` bring their runs' models; files the call writes
    reach the store. In process otherwise (also with a local session: one machine)."""
    if not (runner.on_ray() and distributed.session_available()):
        return fn(runner, *args)
    runs = {run for a in args if isinstance(a, Row) for run in a.runs()}
    models = {run: published(runner, run) for run in sorted(runs, key=repr)}
    opts = {**runner.tier.task_resources(kind), "max_retries": runner.max_retries}
    check_store(runner)
    ((out, written),) = distributed.run_tasks(_call_task, [(task_spec(runner), models, fn, args, kind)],
                                              options=opts, limit=runner.workers if runner.workers > 1 else None,
                                              on_result=None, resource_wait_s=runner.resource_wait_s)
    for name in written:  # (a URI store: what the task published, for this process' own reads)
        runner.artifacts.fetch(name)
    return out


def _train_args(runner, run: Run, seed: int) -> tuple:
    """The "train" task's arguments for one run and seed (its teacher trained: the driver knows its sha)."""
    t = run.teacher
    m = runner.models
    teacher = (runner.model_shas(t)[0], m.origin.get(t, [None])[0]) if t is not None else (None, None)
    return (task_spec(runner), run.single(seed), *teacher)


def _trained(runner, run: Run, seed: int, res: dict, t0: float) -> None:
    """A "train" task landed: record its export (read from the store), sha and origin."""
    runner.models.set(run, seed, runner.store / model_name(res["sha"]), res["sha"], res["origin"])
    runner.artifacts.fetch(model_name(res["sha"]))  # (a URI store: into the mirror, for this process' own use)
    runner.event("train", train_key(run, seed), "done", res.get("seconds"))
    runner.log(f"[runner] model: {run.kind} {run.backbone} seed {seed} {dict(run.options) or ''}-> {res['sha']} "
               f"(node {res['node'][:8]}, {time.time() - t0:.0f} s)")


def _scores_name(runner, row: Row | None) -> str:
    """The scores file of `row` (None: the reference) in the store."""
    return runner.reference_path().name if row is None else runner.scores_path(row).name


def _score_args(runner, row: Row | None) -> tuple | None:
    """The "score" ("reference": row None) task's arguments, or None when the artifact is in the store."""
    name = _scores_name(runner, row)
    if runner.artifacts.exists(name):
        if row is not None:
            runner.event("score", runner.score_node(row), "cached")
        return None
    if row is not None:
        runner.event("score", runner.score_node(row), "start")
    models = {run: published(runner, run) for run in row.runs()} if row is not None else {}
    return (task_spec(runner), models, row, name)


def _scored(runner, row: Row | None, res: dict, t0: float) -> None:
    runner.artifacts.fetch(_scores_name(runner, row))  # (a URI store: into the local mirror; a folder: nothing)
    if row is not None:
        runner.event("score", runner.score_node(row), "done", res.get("seconds"))
    runner.log(f"[runner]   {row.name if row is not None else 'reference'}: scored on node {res['node'][:8]} "
               f"in {res['seconds']:.0f} s ({time.time() - t0:.0f} s since the first task)")


def prepare_graph(plan: list[tuple[object, list[Table]]], *, scores: bool = True) -> None:
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
        if r.models is not head.models:
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
                runner.score_all(runner.prepare_rows(ts))
        return
    trainings = [(r, s) for r in teachers + students if r not in head.models.exports for s in r.seeds]
    scorings = []
    if scores:
        for runner, ts in plan:
            rows = runner.prepare_rows(ts)
            scorings += [(runner, None)] * bool(rows) + [(runner, row) for row in rows]
    run_graph(head, trainings, scorings)


def run_graph(head, trainings: list[tuple[Run, int]], scorings: list[tuple[object, Row | None]]) -> None:
    """Trainings (run, seed; a student after its teacher) and scorings (runner, row; None: that runner's
    reference) as one Ray task graph; each node's arguments are made when it is ready (`_train_args`,
    `_score_args`: an artifact already in the store needs no task)."""
    nodes, kinds, index = [], [], {}
    t0 = time.time()

    def task_options(kind: str) -> dict:
        return {**head.tier.task_resources(kind), "max_retries": head.max_retries}

    def train_args(run: Run, seed: int):
        head.event("train", train_key(run, seed), "start")
        return _train_args(head, run, seed)

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
        nodes.append(distributed.TaskNode(_score_task, functools.partial(_score_args, runner, row), deps,
                                          task_options(kind)))
        kinds.append((kind, runner, row))
    if not nodes:
        return

    def landed(i, res):
        if res is None:  # found in the store: no task ran
            return
        kind, runner, what = kinds[i]
        if kind == "train":
            _trained(runner, *what, res, t0)
        else:
            _scored(runner, what, res, t0)

    n_train = len(trainings)
    head.log(f"[runner] {n_train} training(s) and {len(nodes) - n_train} scoring(s) as one Ray task graph "
             f"(train: {head.tier.task_resources('train')}, score: {head.tier.task_resources('score')} each)")
    check_store(head)
    distributed.run_graph(nodes, limit=head.workers if head.workers > 1 else None, on_result=landed,
                          resource_wait_s=head.resource_wait_s)


# ---------------------------------------------------------------------- the Ray tasks (one per artifact node)
def worker_runner(spec: dict):
    torch.set_num_threads(1)
    spec = dict(spec)
    cls, tier = spec.pop("cls"), spec.pop("tier")
    return cls(get_tier(tier) if isinstance(tier, str) else tier, spec.pop("cache"), workers=1, **spec)


class NodeLog:
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


def local_model(store: Store, sha: str, origin: str | None) -> Path:
    """The model `sha`: its training run's own export when this node can read it (the training programs
    key students by their teacher's path, so this reuses runs trained in process), else the store's copy."""
    if origin and origin != "None" and Path(origin).is_file() and file_sha(origin) == sha:
        return Path(origin)
    p = store.fetch(model_name(sha))
    if p is None:
        raise FileNotFoundError(f"model {sha} is not in the artifact store {store.uri}")
    return p


def _adopt(runner, models: dict) -> None:
    """Give a worker's runner the driver's models: run -> [(sha, path of the export where it was made)]."""
    for run, pub in models.items():
        runner.models.adopt(run, [local_model(runner.artifacts, sha, origin) for sha, origin in pub],
                            [sha for sha, _ in pub])


def _build_task(spec: dict, run: Run, teacher_sha: str | None, teacher_origin: str | None) -> dict:
    """A Ray "train" task: train (or find trained) one run with one seed, publish its export to the store
    as models/<sha>.safetensors; returns {"sha", "origin", "node", "seconds"}."""
    runner = worker_runner(spec)
    store, tier = runner.artifacts, runner.tier
    log = NodeLog(store, f"train-{settings_hash({'tier': tier.name, 'run': run.settings(), 'teacher': teacher_sha})}",
                   "train")
    teacher = local_model(store, teacher_sha, teacher_origin) if teacher_sha else None
    export = Path(tier.build(run, teacher, runner.cache))
    sha = file_sha(export)
    reused = store.exists(model_name(sha))  # trained (and published) before: this task only found it
    store.put_file(model_name(sha), export)  # (a no-op when it is there)
    return log.done(reused=reused, artifact=model_name(sha), sha=sha, origin=str(export.resolve()))


def _score_task(spec: dict, models: dict, row: Row | None, name: str) -> dict:
    """A Ray "score" / "reference" task: generate, decode and embed one row (row None: the real clips),
    publish the artifacts to the store; `name` is the scores file the driver expects; `models`: the
    row's run -> [(sha, path of the export where it was made)] (read from the store unless readable)."""
    runner = worker_runner(spec)
    log = NodeLog(runner.artifacts, Path(name).stem, "reference" if row is None else "score")
    _adopt(runner, models)
    path = runner.reference_path() if row is None else runner.scores_path(row)
    if path.name != name:
        raise RuntimeError(f"this node computes the artifact name {path.name} where the driver expects {name}: "
                           "the driver and the workers run different code or components (install the same "
                           "version of soundctm and of its components everywhere)")
    if row is None:
        runner.reference()
    else:
        runner.scores(row)
    return log.done(artifact=name)


def _call_task(spec: dict, models: dict, fn, args: tuple, kind: str) -> tuple:
    """A Ray task: (`fn(runner, *args)` with a worker's runner, the files it wrote to the store) (`on_worker`)."""
    runner = worker_runner(spec)
    what = [a.name if isinstance(a, Row) else repr(a) for a in args if isinstance(a, (Row, str, int, float))]
    log = NodeLog(runner.artifacts, f"{kind}-{getattr(fn, '__name__', 'call')}-{settings_hash(what)}", kind)
    _adopt(runner, models)
    before = len(runner.artifacts.written)
    out = fn(runner, *args)
    written = runner.artifacts.written[before:]
    log.done(call=getattr(fn, "__qualname__", str(fn)), args=what)
    return out, written
