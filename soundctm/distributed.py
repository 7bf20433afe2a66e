"""Everything that touches Ray lives in this module (and `ray`, an optional package, is imported only
inside functions). A thin adapter: it maps functions it is GIVEN over chunks, tasks or training
workers, and imports nothing of soundctm above the utilities (the callers pass their functions in).

Sections:
  1. Ray session helpers (`ray_available`, `cluster_address`, `init_ray`, `session_available`,
     `current_node`, `actor_resources`).
  2. `run_graph(nodes)`: a graph of calls as Ray tasks, each submitted once its dependencies have finished,
     with the resources and retries it asks for; `run_tasks(fn, args, options=...)`: independent calls
     (`map_tasks(fn, args, workers)`: the same, in process for workers <= 1);
     `nodes_missing(path)`: the nodes that cannot see a path (is a store shared?).
  3. `map_chunks_ray(fn, jobs, state=..., setup=...)`: chunks on a pool of actors, each holding one
     `setup(state)` (e.g. one embedder); `soundctm.metrics.extract.extract_files(map_chunks=...)`.
  4. Ray Train (`run_training_ray(train_fn, config, run_dir, ...)`, `soundctm distill --workers N`);
     its single-process twin is `soundctm.train.loop.run_training`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from soundctm.io import load_state, save_state

__all__ = [
    "ray_available",
    "cluster_address",
    "init_ray",
    "session_available",
    "current_node",
    "fitting_nodes",
    "run_tasks",
    "run_graph",
    "TaskNode",
    "nodes_missing",
    "actor_resources",
    "map_tasks",
    "map_chunks_ray",
    "run_training_ray",
    "RayTrainContext",
]


# ============================================================================ 1. Ray session helpers
def ray_available() -> bool:
    """True when `ray` can be imported."""
    try:
        import ray  # noqa: F401  (optional package)
    except ImportError:
        return False
    return True


def _require_ray():
    try:
        import ray  # optional package (the `ray` extra)
    except ImportError as e:
        raise ImportError(
            "this run needs Ray (workers > 1); install it with `pip install 'soundctm[ray]'` "
            "or run with a single worker"
        ) from e
    return ray


def cluster_address() -> str | None:
    """The running Ray cluster this process should join, or None: `RAY_ADDRESS`, else the cluster that
    `ray start` recorded on this machine (how a script run by `ray submit` on the head finds it)."""
    addr = os.environ.get("RAY_ADDRESS")
    if addr:
        return addr
    try:
        from ray._private.utils import read_ray_address  # optional package (ray); `ray start` writes it
    except ImportError:
        return None
    try:
        return read_ray_address() or None
    except OSError:
        return None


# ray.init arguments that only make sense when starting a local session (Ray refuses them when joining)
_LOCAL_ONLY = ("num_cpus", "num_gpus", "resources", "labels", "object_store_memory", "_system_config", "_temp_dir",
               "include_dashboard", "dashboard_host", "dashboard_port")
_session = {"local": False}


def init_ray(num_cpus: int | None = None, **kwargs: Any) -> bool:
    """Join a running Ray cluster or start a local session, if none is connected. Returns True when
    this call connected (the caller then shuts down), False when a session was already connected.

    A running cluster (`cluster_address()`: `RAY_ADDRESS`, or `ray start` on this machine as under
    `ray submit`) is joined with `ray.init(address="auto")`, and the local-only arguments (`num_cpus`,
    `_temp_dir` - which must be short: Unix socket paths are limited to 107 bytes - ...) are dropped;
    otherwise a local session starts with them. The dashboard is off unless asked for.
    """
    ray = _require_ray()
    if ray.is_initialized():
        return False
    kwargs.setdefault("log_to_driver", False)
    if cluster_address() is not None:
        ray.init(address="auto", **{k: v for k, v in kwargs.items() if k not in _LOCAL_ONLY})
        _session["local"] = False
        return True
    kwargs.setdefault("include_dashboard", False)
    if num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)
    _session["local"] = True
    return True


def session_available() -> bool:
    """True when Ray work would run on a cluster: a session is connected or a cluster is running."""
    if not ray_available():
        return False
    import ray  # optional package (ray)

    return ray.is_initialized() or cluster_address() is not None


def current_node() -> dict | None:
    """{"node_id", "ip"} of the Ray node running the caller (None outside a Ray task or session)."""
    try:
        import ray  # optional package (ray)
    except ImportError:
        return None
    if not ray.is_initialized():
        return None
    return {"node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address()}


def actor_resources(workers: int) -> dict[str, float]:
    """Resources per actor so that `workers` actors fit on the cluster at once.

    CPU: min(1, cluster CPUs / workers) (two actors fit on two CPUs). GPU: requested only when
    the cluster has GPUs (asking for a GPU that does not exist leaves the actor pending forever),
    min(1, GPUs / workers).
    """
    ray = _require_ray()
    res = ray.cluster_resources()
    cpus = float(res.get("CPU", 1.0))
    out = {"num_cpus": max(min(1.0, cpus / max(workers, 1)), 0.01)}
    gpus = float(res.get("GPU", 0.0))
    if gpus > 0:
        out["num_gpus"] = min(1.0, gpus / max(workers, 1))
    return out


# ============================================================================ 2. tasks
_RESOURCE_NAMES = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
CLUSTER_WAIT_S = 900.0  # how long a joined cluster may lack a node that fits a task (an autoscaler adds one)


def _demand(options: dict) -> dict[str, float]:
    d = {_RESOURCE_NAMES[k]: float(v) for k, v in options.items() if k in _RESOURCE_NAMES and v}
    d.update({k: float(v) for k, v in (options.get("resources") or {}).items() if v})
    return d


def fitting_nodes(options: dict) -> list[str]:
    """Ids of the alive nodes whose total resources can hold one task with these Ray `options`."""
    ray = _require_ray()
    need = _demand(options)
    return [n["NodeID"] for n in ray.nodes()
            if n.get("Alive") and all(float(n.get("Resources", {}).get(k, 0.0)) >= v for k, v in need.items())]


def _node_table() -> str:
    ray = _require_ray()
    return "; ".join(f"{n['NodeID'][:8]}: {dict(sorted(n.get('Resources', {}).items()))}"
                     for n in ray.nodes() if n.get("Alive"))


@dataclass(frozen=True)
class TaskNode:
    """One node of a task graph (`run_graph`): `fn(*args)` as a Ray task once every node in `deps` (indices
    into the graph's list) has finished. `args` is a tuple, or a callable evaluated in the driver when the node
    is ready (so it may read what its dependencies' `on_result` recorded) returning the tuple, or None: the
    node needs no task (e.g. its artifact exists) and counts as finished with result None. `options`: the
    node's Ray task options (see `run_graph`)."""

    fn: Callable
    args: tuple | Callable[[], tuple | None] = ()
    deps: tuple[int, ...] = ()
    options: dict | None = None


def run_tasks(fn: Callable, args: Sequence[tuple], *, options: dict | None = None, limit: int | None = None,
              on_result: Callable[[int, Any], None] | None = None, init_kwargs: dict | None = None,
              resource_wait_s: float | None = None) -> list:
    """[fn(*a) for a in args] as Ray tasks, in order; `on_result(i, result)` in the driver as each ends.
    Independent calls: `run_graph` with no dependencies (see there for `options`, `limit`, errors)."""
    return run_graph([TaskNode(fn, tuple(a), (), options) for a in args], limit=limit, on_result=on_result,
                     init_kwargs=init_kwargs, resource_wait_s=resource_wait_s)


def run_graph(nodes: Sequence[TaskNode], *, limit: int | None = None,
              on_result: Callable[[int, Any], None] | None = None, init_kwargs: dict | None = None,
              resource_wait_s: float | None = None) -> list:
    """Run a graph of tasks (`TaskNode`s; a node's deps come before it in the list) as Ray tasks: a node is
    submitted as soon as its dependencies have finished, the ready node that comes first in the list first,
    at most `limit` in flight (None: every ready node at once; Ray queues them by resources). So independent
    work never waits for a stage: a student trains as soon as its teacher has landed, and a row is scored
    while other trainings still run. Returns the results in list order; `on_result(i, result)` runs in the
    driver as node i finishes (before its dependents' args are evaluated).

    options (per node): Ray task options: resources (`num_cpus` (default 1), `num_gpus`, `memory`,
      `resources`) and `max_retries` (default 3: a task whose worker or node dies is run again elsewhere; an
      exception raised by `fn` itself is not retried). `fn` must be importable by the workers (module level).
    A task that no node can hold is an error, not a wait forever: at once for a local session, after
    `resource_wait_s` (default CLUSTER_WAIT_S) on a joined cluster, whose autoscaler may add the node.
    When a node fails, the nodes that depend on it (directly or not) are not run, every other node still
    finishes (and reaches `on_result`); then the first error is raised.
    Joins a running cluster or starts a local session when none is connected (`init_ray(**init_kwargs)`;
    a local one gets `num_cpus=limit` unless told) at the first task (a graph whose nodes all need no task
    starts nothing) and disconnects afterwards.
    """
    for i, n in enumerate(nodes):
        bad = [d for d in n.deps if not 0 <= d < i]
        if bad:
            raise ValueError(f"task node {i} depends on {bad}: a node may depend only on nodes before it")
    ray = _require_ray()
    base = {"num_cpus": 1, "max_retries": 3, "retry_exceptions": False}
    opts = [{**base, **(n.options or {})} for n in nodes]
    init_kwargs = dict(init_kwargs or {})
    if limit and "num_cpus" not in init_kwargs:
        init_kwargs["num_cpus"] = max(int(limit), 1)
    session = {"started": False, "wait_s": resource_wait_s}  # joined or started at the first task, not before

    def connect():
        session["started"] = init_ray(**init_kwargs)
        if session["wait_s"] is None:
            session["wait_s"] = 0.0 if _session["local"] and session["started"] else CLUSTER_WAIT_S
        if session["wait_s"] <= 0:
            for o in {repr(sorted(_demand(o).items())): o for o in opts}.values():
                if not fitting_nodes(o):
                    raise RuntimeError(f"no node of the Ray cluster can run a task asking for {_demand(o)} "
                                       f"(nodes: {_node_table()})")

    try:
        remotes: dict[tuple, Any] = {}

        def remote(i):
            if not remotes:
                connect()
            key = (nodes[i].fn, repr(sorted(opts[i].items())))
            if key not in remotes:
                remotes[key] = ray.remote(nodes[i].fn).options(**opts[i])
            return remotes[key]

        out: list = [None] * len(nodes)
        state = ["waiting"] * len(nodes)  # -> running -> done | failed | dropped (a dependency failed)
        pending: dict[Any, int] = {}
        first_error: BaseException | None = None
        starved_since = None

        def finish(i, result):
            out[i], state[i] = result, "done"
            if on_result is not None:
                on_result(i, result)

        def fail(i, err):
            nonlocal first_error
            state[i] = "failed"
            first_error = first_error or err

        while True:
            progressed = True
            while progressed:  # submit ready nodes in list order (a node that needs no task finishes at once)
                progressed = False
                for i, n in enumerate(nodes):
                    if state[i] != "waiting":
                        continue
                    if any(state[d] in ("failed", "dropped") for d in n.deps):
                        state[i], progressed = "dropped", True
                        continue
                    if not all(state[d] == "done" for d in n.deps):
                        continue
                    if limit is not None and len(pending) >= limit:
                        break
                    try:
                        a = n.args() if callable(n.args) else n.args
                    except Exception as e:  # the driver-side preparation of a node failed
                        fail(i, e)
                        progressed = True
                        continue
                    if a is None:
                        finish(i, None)
                    else:
                        pending[remote(i).remote(*a)] = i
                        state[i] = "running"
                    progressed = True
            if not pending:
                break
            resource_wait_s = session["wait_s"]
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0 if resource_wait_s < 10 else 5.0)
            if not done:
                if all(fitting_nodes(opts[i]) for i in set(pending.values())):
                    starved_since = None
                    continue
                starved_since = starved_since or time.monotonic()
                if time.monotonic() - starved_since > resource_wait_s:
                    need = [_demand(opts[i]) for i in set(pending.values()) if not fitting_nodes(opts[i])]
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    raise RuntimeError(f"for {resource_wait_s:.0f} s no node of the Ray cluster could run a task "
                                       f"asking for {need[0] if need else '?'} (nodes: {_node_table()})")
                continue
            for ref in done:
                i = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    fail(i, e.as_instanceof_cause())
                    continue
                except ray.exceptions.RayError as e:  # retries exhausted, task cancelled, ...
                    fail(i, e)
                    continue
                finish(i, result)
        if first_error is not None:
            raise first_error
        return out
    finally:
        if session["started"]:
            ray.shutdown()


def map_tasks(fn: Callable, args: Sequence[tuple], *, workers: int, init_kwargs: dict | None = None,
              num_cpus: float = 1.0, options: dict | None = None) -> list:
    """[fn(*a) for a in args]: in this process for workers <= 1, else `run_tasks` with at most `workers`
    in flight (`options` as there; `num_cpus` per task unless `options` says)."""
    if workers <= 1:
        return [fn(*a) for a in args]
    return run_tasks(fn, args, options={"num_cpus": num_cpus, **(options or {})}, limit=workers,
                     init_kwargs=init_kwargs)


def _exists(path: str) -> bool:
    return os.path.exists(path)


def nodes_missing(path: str | os.PathLike, timeout_s: float = 120.0) -> list[str]:
    """Ids of the alive nodes (other than the driver's) on which `path` does not exist: one zero-CPU task
    pinned to each node. A node that does not answer within `timeout_s` is not counted."""
    ray = _require_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # optional package (ray)

    started = init_ray()
    try:
        me = ray.get_runtime_context().get_node_id()
        probe = ray.remote(_exists)
        refs = {probe.options(num_cpus=0, max_retries=0,
                              scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                              ).remote(str(path)): n["NodeID"]
                for n in ray.nodes() if n.get("Alive") and n["NodeID"] != me}
        if not refs:
            return []
        done, late = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        for ref in late:
            ray.cancel(ref, force=True)
        missing = []
        for ref in done:
            try:
                if not ray.get(ref):
                    missing.append(refs[ref])
            except ray.exceptions.RayError:  # the node went away meanwhile
                pass
        return missing
    finally:
        if started:
            ray.shutdown()


# ============================================================================ 3. chunks on an actor pool
def _make_actor_class(ray):
    @ray.remote
    class ChunkActor:
        """Holds one `setup(state)` (e.g. one embedder model per actor) and runs `fn(held, job)`."""

        def __init__(self, state, setup, torch_threads: int = 1):
            torch.set_num_threads(torch_threads)
            self.held = setup(state) if setup is not None else state
            if hasattr(self.held, "to") and torch.cuda.is_available() and ray.get_gpu_ids():
                self.held.to("cuda")

        def run(self, fn, index: int, job):
            return index, fn(self.held, job)

    return ChunkActor


def map_chunks_ray(
    fn: Callable[[Any, Any], dict],
    jobs: Sequence,
    *,
    state: Any,
    workers: int,
    on_result: Callable[[Any, dict], None],
    setup: Callable[[Any], Any] | None = None,
    init_kwargs: dict | None = None,
    torch_threads: int = 1,
) -> None:
    """Run `fn(setup(state), job)` for every job on an `ActorPool` of `workers` actors.

    state: what each actor receives (pickled), e.g. an embedder or a spec to build one with `setup`.
    jobs: objects with an `index`; `on_result(job, result)` is called in the driver as each chunk
      finishes (in completion order), so finished work is saved even if a later chunk fails.
    Starts a local Ray session (`init_ray(**init_kwargs)`) if none is running and shuts it down
    afterwards; an existing session is left running. If a chunk fails, the remaining chunks still
    finish and are handed to `on_result`; then the first error is raised.
    """
    ray = _require_ray()
    from ray.util import ActorPool  # optional package (ray)

    init_kwargs = dict(init_kwargs or {})
    if "num_cpus" not in init_kwargs and not ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
        init_kwargs["num_cpus"] = max(workers, 1)
    started = init_ray(**init_kwargs)
    actors = []
    try:
        Actor = _make_actor_class(ray)
        opts = actor_resources(workers)
        actors = [
            Actor.options(**opts).remote(state, setup, torch_threads) for _ in range(min(workers, len(jobs)))
        ]
        pool = ActorPool(actors)
        by_index = {job.index: job for job in jobs}
        for job in jobs:
            pool.submit(lambda a, j: a.run.remote(fn, j.index, j), job)
        first_error: BaseException | None = None
        while pool.has_next():
            try:
                index, result = pool.get_next_unordered()
            except ray.exceptions.RayTaskError as e:
                first_error = first_error or e.as_instanceof_cause()
                continue
            except ray.exceptions.RayError as e:  # actor died, etc.
                first_error = first_error or e
                continue
            on_result(by_index[index], result)
        if first_error is not None:
            raise first_error
    finally:
        for a in actors:
            try:
                ray.kill(a)
            except Exception:
                pass
        if started:
            ray.shutdown()


# ============================================================================ 4. Ray Train (training loops)
# `soundctm distill --workers N [--gpus]`: the same loop as the plain path
# (`soundctm.train.loop.run_training`) inside `ray.train.torch.TorchTrainer` workers. Ray sets up
# torch.distributed (gloo on CPU, NCCL on GPU); the loop averages gradients over workers itself, and
# worker r of N takes the global-batch example indices r::N, every draw derived from (seed, step,
# example index), so 1 worker reproduces the plain path exactly. Rank 0 writes the run directory
# (config, metrics.jsonl, checkpoints, export) and reports each checkpoint to Ray; after a worker
# failure Ray restarts the group (FailureConfig(max_failures)) and the loop resumes from the last
# reported checkpoint.

RAY_STATE_FILE = "state.pt"


class RayTrainContext:
    """The loop's context inside a Ray Train worker: rank/world from Ray, checkpoints reported to Ray.

    `load_latest(run_dir)` / `save_checkpoint(run_dir, state, keep=)` are the loop's own on-disk
    checkpoint functions (passed in), used when Ray holds no checkpoint yet and by rank 0.
    """

    def __init__(self, run_dir, load_latest: Callable, save_checkpoint: Callable):
        import ray.train  # optional package (ray)

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.run_dir = Path(run_dir)
        self._load_latest, self._save_checkpoint = load_latest, save_checkpoint

    def load_latest(self):
        import ray.train  # optional package (ray)

        ckpt = ray.train.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                return load_state(Path(d) / RAY_STATE_FILE)
        return self._load_latest(self.run_dir)

    def save(self, state, metrics: dict, keep: int) -> None:
        import ray.train  # optional package (ray)

        if self.rank != 0:
            ray.train.report(dict(metrics))
            return
        self._save_checkpoint(self.run_dir, state, keep=keep)
        with tempfile.TemporaryDirectory(prefix="soundctm-ckpt-") as d:
            save_state(Path(d) / RAY_STATE_FILE, dict(state, format_version=1))
            ray.train.report(dict(metrics), checkpoint=ray.train.Checkpoint.from_directory(d))

    def report(self, metrics: dict) -> None:
        pass


def _train_worker(loop_config: dict) -> None:
    """Ray Train worker body (module level so that workers can import it): the given training function
    `train_fn(config: dict, run_dir, *, ctx, device, progress)` with a `RayTrainContext`."""
    torch.set_num_threads(int(loop_config["config"].get("threads") or 1))
    device = None
    if loop_config.get("gpus"):
        import ray.train.torch  # optional package (ray)

        device = str(ray.train.torch.get_device())
    run_dir = loop_config["run_dir"]
    ctx = RayTrainContext(run_dir, loop_config["load_latest"], loop_config["save_checkpoint"])
    loop_config["train_fn"](loop_config["config"], run_dir, ctx=ctx, device=device,
                            progress=bool(loop_config.get("progress", False)))


def run_training_ray(train_fn: Callable, config: dict, run_dir, *, load_latest: Callable,
                     save_checkpoint: Callable, workers: int, gpus: bool = False, max_failures: int = 2,
                     storage_path: str | None = None, init_kwargs: dict | None = None,
                     progress: bool = False) -> dict:
    """Run `train_fn(config, run_dir, ctx=..., device=..., progress=...)` on `workers` Ray Train workers.

    config: a resolved training config as a dict (its global `batch_size` must divide by `workers`).
    load_latest / save_checkpoint: the loop's checkpoint functions (see `RayTrainContext`).
    gpus: one GPU per worker and the NCCL backend (the cluster must have them; checked up front,
      since a request for absent GPUs would wait forever). Starts a local Ray session when none is
    running (`init_kwargs` go to `init_ray`) and shuts it down afterwards. Returns the run's summary
    (`<run_dir>/summary.json`).
    """
    ray = _require_ray()
    # optional package (ray)
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if int(config["batch_size"]) % workers:
        raise ValueError(f"global batch {config['batch_size']} is not divisible by {workers} workers")
    run_dir = Path(run_dir).expanduser().resolve()
    init_kwargs = dict(init_kwargs or {})
    if "num_cpus" not in init_kwargs and not ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
        init_kwargs["num_cpus"] = max(workers, 1)
    started = init_ray(**init_kwargs)
    try:
        res = ray.cluster_resources()
        if gpus and float(res.get("GPU", 0)) < workers:
            raise RuntimeError(f"--gpus asks for {workers} GPU worker(s) but the Ray cluster has "
                               f"{res.get('GPU', 0)} GPU(s)")
        cpus = max(min(1.0, float(res.get("CPU", 1.0)) / workers), 0.01)
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config={
                "train_fn": train_fn,
                "load_latest": load_latest,
                "save_checkpoint": save_checkpoint,
                "config": dict(config),
                "run_dir": str(run_dir),
                "gpus": gpus,
                "progress": progress,
            },
            scaling_config=ScalingConfig(
                num_workers=workers, use_gpu=gpus, resources_per_worker={"CPU": cpus}
            ),
            torch_config=TorchConfig(backend="nccl" if gpus else "gloo"),
            run_config=RunConfig(name="ray-train", storage_path=str(storage_path or run_dir / "ray"),
                                 failure_config=FailureConfig(max_failures=max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2)),
        )
        trainer.fit()
    finally:
        if started:
            ray.shutdown()
    return json.loads((run_dir / "summary.json").read_text())
