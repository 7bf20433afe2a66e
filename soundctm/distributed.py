"""Everything that touches Ray lives in this module (and `ray` is imported only inside functions).

Sections:
  1. Ray session helpers (`ray_available`, `init_ray`, `actor_resources`).
  2. Embedding extraction with a pool of actors (`extract_chunks_ray`), used by
     `soundctm.metrics.extract.extract_files(workers > 1)`. Its single-process twin is the plain
     loop over `compute_chunk` in that module; both give the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ray_available", "init_ray", "actor_resources", "extract_chunks_ray"]


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
