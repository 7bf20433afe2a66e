"""Everything that touches Ray lives in this module (and `ray` is imported only inside functions).

Sections:
  1. Ray session helpers (`ray_available`, `init_ray`, `actor_resources`).
  2. Embedding extraction with a pool of actors (`extract_chunks_ray`), used by
     `soundctm.metrics.extract.extract_files(workers > 1)`. Its single-process twin is the plain
     loop over `compute_chunk` in that module; both give the same numbers.
  3. Ray Train for the training loops (`run_training_ray`, `soundctm distill --workers N`); its
     single-process twin is `soundctm.train.loop.run_training`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "ray_available",
    "init_ray",
    "actor_resources",
    "extract_chunks_ray",
    "run_training_ray",
    "RayTrainContext",
]


# ============================================================================ 1. Ray session helpers
def ray_available() -> bool:
    """True when `ray` can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _require_ray():
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            "this run needs Ray (workers > 1); install it with `pip install 'soundctm[ray]'` "
            "or run with a single worker"
        ) from e
    return ray


def init_ray(num_cpus: int | None = None, **kwargs: Any) -> bool:
    """Start or join a Ray session if none is running. Returns True when this call started it.

    A plain call joins a running cluster (`RAY_ADDRESS` / `ray start`) or starts a local one.
    `num_cpus` and other kwargs (e.g. `_temp_dir`, which must be short: Unix socket paths are
    limited to 107 bytes) go to `ray.init`; the dashboard is off unless asked for.
    """
    ray = _require_ray()
    if ray.is_initialized():
        return False
    kwargs.setdefault("include_dashboard", False)
    kwargs.setdefault("log_to_driver", False)
    if num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)
    return True


def actor_resources(workers: int) -> dict[str, float]:
    """Resources per actor so that `workers` actors fit on the cluster at once.

    CPU: min(1, cluster CPUs / workers) (two actors fit on two CPUs). GPU: requested only when
    the cluster has GPUs (asking for a GPU that does not exist leaves the actor pending forever),
    min(1, GPUs / workers).
    """
    import ray

    res = ray.cluster_resources()
    cpus = float(res.get("CPU", 1.0))
    out = {"num_cpus": max(min(1.0, cpus / max(workers, 1)), 0.01)}
    gpus = float(res.get("GPU", 0.0))
    if gpus > 0:
        out["num_gpus"] = min(1.0, gpus / max(workers, 1))
    return out


# ============================================================================ 2. extraction actor pool
def _make_actor_class(ray):
    @ray.remote
    class ExtractActor:
        """Holds one embedder (one model per actor) and embeds chunks of files."""

        def __init__(self, embedder, torch_threads: int = 1):
            import torch

            torch.set_num_threads(torch_threads)
            from soundctm.metrics.extract import EmbedderSpec

            self.emb = embedder.build() if isinstance(embedder, EmbedderSpec) else embedder
            if hasattr(self.emb, "to") and torch.cuda.is_available() and ray.get_gpu_ids():
                self.emb.to("cuda")

        def run(self, index: int, files: Sequence[str], clip_seconds):
            from soundctm.metrics.extract import compute_chunk

            return index, compute_chunk(self.emb, files, clip_seconds)

    return ExtractActor


def extract_chunks_ray(
    embedder,
    jobs: Sequence,
    *,
    workers: int,
    clip_seconds: float | None,
    on_result: Callable[[Any, dict], None],
    init_kwargs: dict | None = None,
    torch_threads: int = 1,
) -> None:
    """Run `compute_chunk` for every job on an `ActorPool` of `workers` actors.

    embedder: an `Embedder` or `EmbedderSpec` (each actor builds/unpickles its own model).
    jobs: `ChunkJob`s; `on_result(job, result)` is called in the driver as each chunk finishes
      (in completion order), so finished work is saved even if a later chunk fails.
    Starts a local Ray session (`init_ray(**init_kwargs)`) if none is running and shuts it down
    afterwards; an existing session is left running. If a chunk fails, the remaining chunks still
    finish and are handed to `on_result`; then the first error is raised.
    """
    ray = _require_ray()
    from ray.util import ActorPool

    init_kwargs = dict(init_kwargs or {})
    if "num_cpus" not in init_kwargs and not ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
        init_kwargs["num_cpus"] = max(workers, 1)
    started = init_ray(**init_kwargs)
    actors = []
    try:
        Actor = _make_actor_class(ray)
        opts = actor_resources(workers)
        actors = [
            Actor.options(**opts).remote(embedder, torch_threads) for _ in range(min(workers, len(jobs)))
        ]
        pool = ActorPool(actors)
        by_index = {job.index: job for job in jobs}
        for job in jobs:
            pool.submit(lambda a, j: a.run.remote(j.index, list(j.files), clip_seconds), job)
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


# ============================================================================ 3. Ray Train (training loops)
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
    """The loop's context inside a Ray Train worker: rank/world from Ray, checkpoints reported to Ray."""

    def __init__(self, run_dir):
        from pathlib import Path

        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.run_dir = Path(run_dir)

    def load_latest(self):
        from pathlib import Path

        import ray.train

        from soundctm.io import load_state
        from soundctm.train.checkpoint import load_latest

        ckpt = ray.train.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                return load_state(Path(d) / RAY_STATE_FILE)
        return load_latest(self.run_dir)

    def save(self, state, metrics: dict, keep: int) -> None:
        import tempfile
        from pathlib import Path

        import ray.train

        from soundctm.io import save_state
        from soundctm.train.checkpoint import save_checkpoint

        if self.rank != 0:
            ray.train.report(dict(metrics))
            return
        save_checkpoint(self.run_dir, state, keep=keep)
        with tempfile.TemporaryDirectory(prefix="soundctm-ckpt-") as d:
            save_state(Path(d) / RAY_STATE_FILE, dict(state, format_version=1))
            ray.train.report(dict(metrics), checkpoint=ray.train.Checkpoint.from_directory(d))

    def report(self, metrics: dict) -> None:
        pass


def _train_worker(loop_config: dict) -> None:
    """Ray Train worker body (module level so that workers can import it)."""
    import dataclasses

    import torch

    from soundctm.train.loop import config_from_dict, run_training

    cfg = config_from_dict(loop_config["config"])
    torch.set_num_threads(int(cfg.threads or 1))
    if loop_config.get("gpus"):
        import ray.train.torch

        cfg = dataclasses.replace(cfg, device=str(ray.train.torch.get_device()))
    run_training(cfg, loop_config["run_dir"], ctx=RayTrainContext(loop_config["run_dir"]),
                 progress=bool(loop_config.get("progress", False)))


def run_training_ray(config, run_dir, *, workers: int, gpus: bool = False, max_failures: int = 2,
                     storage_path: str | None = None, init_kwargs: dict | None = None,
                     progress: bool = False) -> dict:
    """Run `soundctm.train.loop.run_training(config, run_dir)` on `workers` Ray Train workers.

    config: a `TrainConfig` (resolved here; its global batch must divide by `workers`).
    gpus: one GPU per worker and the NCCL backend (the cluster must have them; checked up front,
      since a request for absent GPUs would wait forever). Starts a local Ray session when none is
    running (`init_kwargs` go to `init_ray`) and shuts it down afterwards. Returns the run's summary.
    """
    ray = _require_ray()
    import json
    from pathlib import Path

    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from soundctm.train.loop import resolve_config

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cfg = resolve_config(config)
    if cfg.batch_size % workers:
        raise ValueError(f"global batch {cfg.batch_size} is not divisible by {workers} workers")
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
                "config": cfg.to_dict(),
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
