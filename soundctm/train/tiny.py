"""The tiny tier's cached training runs: a teacher and students built once per setting, reused after.

A run lives in `cache_dir()/tiny/runs/<kind>-<preset>-...-<key>/`, key = a hash of every setting that
changes the trained weights; an interrupted run resumes from its last checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from soundctm.data.latent_cache import file_checksum
from soundctm.io import file_lock, settings_hash
from soundctm.paths import cache_dir
from soundctm.train.components import TinyComponentsConfig
from soundctm.train.config import BOOKKEEPING, KEY_OMIT_IF_DEFAULT, TrainConfig, resolve_config
from soundctm.train.distill import tiny_student_config
from soundctm.train.loop import run_training
from soundctm.train.teacher import tiny_teacher_config

__all__ = ["runs_dir", "run_key", "build_or_reuse", "train_tiny_teacher", "distill_tiny_student"]


def runs_dir(cache=None) -> Path:
    return (Path(cache).expanduser() if cache is not None else cache_dir()) / "tiny" / "runs"


def run_key(cfg: TrainConfig, extra: dict | None = None) -> str:
    """Short hash of every setting that changes the trained weights (not threads / checkpoint cadence)."""
    d = resolve_config(cfg).to_dict()
    for k in BOOKKEEPING:
        d.pop(k, None)
    defaults = TrainConfig()
    for k in KEY_OMIT_IF_DEFAULT:
        if k in d and d[k] == getattr(defaults, k):
            del d[k]
    return settings_hash([d, extra or {}], 12)


def _components_key(cache) -> dict:
    return {"components": TinyComponentsConfig().to_dict()}


def train_tiny_teacher(
    cache=None,
    preset: str = "tiny-dit",
    force: bool = False,
    *,
    progress: bool = True,
    log=print,
    **overrides,
) -> Path:
    """Build or reuse the tiny teacher for `preset`; returns the path of its export (EMA, safetensors).

    The run lives in `cache_dir()/tiny/runs/teacher-<preset>-<key>/`, key = hash of every setting
    (and of the tiny components' settings); an interrupted run resumes from its last checkpoint.
    """
    cfg = tiny_teacher_config(preset, cache=str(cache) if cache is not None else None, **overrides)
    run_dir = runs_dir(cache) / f"teacher-{preset}-{run_key(cfg, _components_key(cache))}"
    return build_or_reuse(cfg, run_dir, force=force, progress=progress, log=log)


def build_or_reuse(cfg: TrainConfig, run_dir: Path, *, force: bool, progress: bool, log) -> Path:
    """The export of the run in `run_dir`: reused if finished, else trained (resuming any checkpoint);
    `force` starts the run afresh.

    One builder per run at a time (a lock file beside `run_dir`): two processes on one cache that need the same
    model (two `all.py` invocations, Ray workers of one machine) do not train it twice into one directory; the
    second waits, then reuses the first's export."""
    run_dir = Path(run_dir)
    export = run_dir / "export.safetensors"
    with file_lock(run_dir.parent / f".{run_dir.name}.lock"):
        if export.exists() and not force:  # (finished earlier, or by the holder this process waited for)
            return export
        if force and run_dir.exists():
            shutil.rmtree(run_dir)
        run_training(cfg, run_dir, progress=progress, log=log)
    return export


def distill_tiny_student(
    teacher_path,
    preset: str = "tiny-dit",
    distance: str = "d_teacher",
    force: bool = False,
    *,
    cache=None,
    progress: bool = True,
    log=print,
    **overrides,
) -> Path:
    """Build or reuse a tiny student distilled from `teacher_path`; returns its export path.

    The run lives in `cache_dir()/tiny/runs/student-<preset>-<distance or objective>-<key>/`, key = hash of every
    setting and of the teacher file's checksum; an interrupted run resumes.
    """
    cfg = tiny_student_config(
        teacher_path, preset, distance, cache=str(cache) if cache is not None else None, **overrides
    )
    key = run_key(cfg, {"teacher": file_checksum(teacher_path)})
    method = distance if cfg.objective == "ctm" else cfg.objective  # (a CD student has no CTM distance)
    run_dir = runs_dir(cache) / f"student-{preset}-{method}-{key}"
    return build_or_reuse(cfg, run_dir, force=force, progress=progress, log=log)
