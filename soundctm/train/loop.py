"""The training loop shared by teacher training and distillation (plain process or Ray worker).

`run_training(config, run_dir)` resolves the config, writes it to `<run_dir>/config.json`, resumes
from the newest checkpoint if there is one, runs the steps with a tqdm bar (loss, step time, ETA),
appends one JSON line per step to `<run_dir>/metrics.jsonl`, checkpoints every
`checkpoint_every` steps, and finally exports the EMA weights to `<run_dir>/export.safetensors`.

Every random quantity of a step derives from (seed, step, global example index) (soundctm.rng),
and worker r of N processes the global-batch indices r::N; gradients are averaged over workers
with torch.distributed when it is initialised (Ray Train sets it up), so the code path is the same
for 1 process and N workers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from soundctm.io import write_json, write_text
from soundctm.nn.precision import autocast_forward
from soundctm.presets import model_preset
from soundctm.provenance import cpu_info
from soundctm.train.checkpoint import export_model, load_latest, save_checkpoint
from soundctm.train.config import (  # noqa: F401  (TrainConfig & co. re-exported: the loop's settings)
    RESUMABLE_CHANGES,
    TrainConfig,
    allreduce_mean,
    config_from_dict,
    lr_at,
    make_optimizer,
    resolve_config,
)
from soundctm.train.data import ConditionedLatents, tiny_conditioned
from soundctm.train.distill import DistillTask
from soundctm.train.teacher import TeacherTask

__all__ = [
    "TrainConfig",
    "resolve_config",
    "config_from_dict",
    "run_training",
    "run_training_dict",
    "PlainContext",
    "memory_stats",
    "load_data",
    "make_optimizer",
    "allreduce_mean",
]

# ------------------------------------------------------------ helpers


def memory_stats(device: str | torch.device = "cpu") -> dict[str, float]:
    """Current and peak RSS of this process in MiB, and CUDA peak allocated memory when on a GPU."""
    out = {}
    try:
        with open("/proc/self/statm") as f:
            out["rss_mib"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        pass
    try:
        import resource  # Unix-only standard module

        out["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except ImportError:
        pass
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def load_data(cfg: TrainConfig, log=print):
    """The conditioned latents a run trains on (see `soundctm.train.data`)."""

    p = model_preset(cfg.preset)
    if cfg.data == "tiny":
        return tiny_conditioned(p, cfg.cache, log=log)
    # synthetic: clip latents with channel-dependent structure and one random caption vector per pair
    g = torch.Generator().manual_seed(cfg.seed + 12345)
    n = cfg.synthetic_clips
    c, t = p.latent_shape
    lat = p.sigma_data * torch.randn(n, c, t, generator=g)
    cond = torch.nn.functional.normalize(torch.randn(2 * n, *p.cond_shape, generator=g), dim=-1)
    uncond = torch.zeros(1, *p.cond_shape)
    return ConditionedLatents(
        lat,
        cond,
        torch.arange(2 * n) // 2,
        [f"synthetic {i}" for i in range(2 * n)],
        uncond,
        {"source": "synthetic", "seed": cfg.seed + 12345, "mode": "synthetic"},
    )


# ------------------------------------------------------------ contexts


class PlainContext:
    """A single process: rank 0 of 1; checkpoints live in `<run_dir>/checkpoints`."""

    rank, world = 0, 1

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def load_latest(self):
        return load_latest(self.run_dir)

    def save(self, state: dict, metrics: dict, keep: int) -> None:
        save_checkpoint(self.run_dir, state, keep=keep)

    def report(self, metrics: dict) -> None:
        pass


def _metrics_path(run_dir: Path) -> Path:
    return Path(run_dir) / "metrics.jsonl"


def _truncate_metrics(path: Path, start: int) -> None:
    """Drop log lines of steps >= start (they are re-run after a resume)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if rec.get("step", -1) < start:
            keep.append(line)

    write_text(path, "".join(x + "\n" for x in keep))


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The per-step records of a run's metrics.jsonl."""
    path = _metrics_path(Path(run_dir))
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


# ------------------------------------------------------------ the loop


def _maybe_inject_fault(step: int, run_dir: Path) -> None:
    """Fault injection for the resume tests: with SOUNDCTM_FAULT_AT_STEP=k the process dies (exit 3)
    right after step k, once per run directory."""
    at = os.environ.get("SOUNDCTM_FAULT_AT_STEP")
    if at is None or step != int(at):
        return
    marker = Path(run_dir) / ".fault-injected"
    if not marker.exists():
        marker.touch()
        os._exit(3)


def _run_stats(task) -> dict:
    """A task's counters for the step log and the summary (`DistillTask.run_stats`: the teacher-target bank's
    hits and misses), {} when it keeps none."""
    fn = getattr(task, "run_stats", None)
    return fn() if fn is not None else {}


def make_task(cfg: TrainConfig, data, device, log=print):
    if cfg.kind == "teacher":
        return TeacherTask(cfg, data, device)

    return DistillTask(cfg, data, device, log=log)


def apply_amp(task, amp: str, device) -> torch.amp.GradScaler | None:
    """Mixed precision (`TrainConfig.amp`): the backbone of every model the task's losses call (model, EMA,
    teacher) runs its forward under autocast and returns fp32 (`nn.precision.autocast_forward`), so every
    loss is computed in fp32; "fp16" also returns a gradient scaler (None otherwise)."""
    if amp == "off":
        return None
    for name in ("model", "ema", "teacher"):
        m = getattr(task, name, None)
        if isinstance(m, torch.nn.Module) and isinstance(getattr(m, "net", None), torch.nn.Module):
            autocast_forward(m.net, amp, device)
    return torch.amp.GradScaler(torch.device(device).type) if amp == "fp16" else None


def run_training(
    config: TrainConfig, run_dir: str | os.PathLike, *, ctx=None, progress: bool = True, log=print
) -> dict[str, Any]:
    """Train (or resume) a run in `run_dir`. Returns a summary: steps, wall time, last losses, export path.

    With `config.threads` set, torch uses that many threads during the run (restored afterwards).
    """
    prev = torch.get_num_threads()
    try:
        return _run_training(config, run_dir, ctx=ctx, progress=progress, log=log)
    finally:
        torch.set_num_threads(prev)


def run_training_dict(config: dict, run_dir: str | os.PathLike, *, ctx=None, device: str | None = None,
                      progress: bool = False, log=print) -> dict[str, Any]:
    """`run_training` of a config given as a dict (`TrainConfig.to_dict()`), on `device` when given: the
    training function `soundctm.distributed.run_training_ray` runs in each worker."""
    cfg = config_from_dict(config)
    if device is not None:
        cfg = dataclasses.replace(cfg, device=device)
    return run_training(cfg, run_dir, ctx=ctx, progress=progress, log=log)


def _run_training(
    config: TrainConfig, run_dir: str | os.PathLike, *, ctx=None, progress: bool = True, log=print
) -> dict[str, Any]:
    """Train (or resume) a run in `run_dir`. Returns a summary: steps, wall time, last losses, export path."""
    cfg = resolve_config(config)
    run_dir = Path(run_dir)
    ctx = ctx or PlainContext(run_dir)
    main = ctx.rank == 0
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", cfg.to_dict())
    t_setup = time.perf_counter()
    data = load_data(cfg, log=log if main else (lambda *a, **k: None))
    task = make_task(cfg, data, device, log=log if main else (lambda *a, **k: None))
    opt = make_optimizer(task.model.parameters(), cfg)
    scaler = apply_amp(task, cfg.amp, device)
    start, skipped = 0, 0
    state = ctx.load_latest()
    if state is not None:
        now = json.loads(json.dumps(cfg.to_dict()))
        defaults = json.loads(json.dumps(TrainConfig().to_dict()))  # settings newer than the checkpoint
        diff = sorted(k for k in now if k not in RESUMABLE_CHANGES
                      and state["config"].get(k, defaults.get(k)) != now[k])
        if diff:
            raise ValueError(f"{run_dir} holds a run with different settings ({diff}); use another --run-dir")
        task.model.load_state_dict(state["model"])
        task.ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        task.load_extra_state(state.get("task", {}))
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        start = int(state["step"])
        skipped = int(state.get("skipped_steps", 0))
        if main:
            log(f"resumed {run_dir} at step {start}")
    setup_seconds = time.perf_counter() - t_setup
    mpath = _metrics_path(run_dir)
    if main:
        _truncate_metrics(mpath, start)
    bar = None
    if main and progress:
        bar = tqdm(
            total=cfg.steps,
            initial=start,
            desc=f"{cfg.kind} {cfg.preset}",
            unit="step",
            mininterval=1.0,
            dynamic_ncols=True,
        )
    t_run = time.perf_counter()
    last: dict[str, float] = {}
    mf = open(mpath, "a") if main else None
    try:
        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            task.model.train()
            for gr in opt.param_groups:
                gr["lr"] = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.lr_final_fraction)
            out = task.losses(step, ctx.rank, ctx.world)
            opt.zero_grad(set_to_none=True)
            (out["loss"] if scaler is None else scaler.scale(out["loss"])).backward()
            grads = [p.grad for p in task.model.parameters() if p.grad is not None]
            allreduce_mean(grads)
            if scaler is not None:
                scaler.unscale_(opt)
            gnorm = torch.nn.utils.clip_grad_norm_(task.model.parameters(), cfg.grad_clip)
            # the norm is of the all-reduced gradients, so every worker takes the same decision
            skip = cfg.nonfinite == "skip" and not bool(torch.isfinite(gnorm))
            if skip:  # the official code's guard: drop the step, count it
                opt.zero_grad(set_to_none=True)
                skipped += 1
            else:
                if scaler is None:
                    opt.step()
                else:  # skips the update itself when the scaled gradients overflowed
                    scaler.step(opt)
                    scaler.update()
                task.update_ema(step)
                out.update(task.post_step(step))
            scalars = torch.stack([out[k].detach().float().reshape(()) for k in task.log_keys])
            allreduce_mean([scalars])
            dt = time.perf_counter() - t0
            last = {k: float(v) for k, v in zip(task.log_keys, scalars)}
            nxt = step + 1
            at_checkpoint = nxt % cfg.checkpoint_every == 0 or nxt == cfg.steps
            rec = {
                "step": step,
                **last,
                "grad_norm": float(gnorm),
                "lr": opt.param_groups[0]["lr"],
                "step_seconds": dt,
                "skipped_steps": skipped,
                **_run_stats(task),
                **memory_stats(device),
            }
            if at_checkpoint and main and hasattr(task, "checkpoint_metrics"):
                t_eval = time.perf_counter()
                extra = task.checkpoint_metrics(nxt)
                if extra:
                    rec.update(extra, eval_seconds=time.perf_counter() - t_eval)
            if mf is not None:
                mf.write(json.dumps(rec) + "\n")
                mf.flush()
            if bar is not None:
                bar.set_postfix(loss=f"{last['loss']:.4f}", step_s=f"{dt:.3f}", refresh=False)
                bar.update(1)
            if not skip and not math.isfinite(last["loss"]) and cfg.nonfinite == "raise":
                raise FloatingPointError(f"non-finite loss at step {step}: {last}")
            if at_checkpoint:
                st = {
                    "step": nxt,
                    "model": task.model.state_dict(),
                    "ema": task.ema.state_dict(),
                    "optimizer": opt.state_dict(),
                    "rng": {"torch": torch.get_rng_state()},
                    "task": task.extra_state(),
                    **({"scaler": scaler.state_dict()} if scaler is not None else {}),
                    "skipped_steps": skipped,
                    "config": json.loads(json.dumps(cfg.to_dict())),
                }
                ctx.save(st if main else None, rec, cfg.keep_checkpoints)
            _maybe_inject_fault(step, run_dir)
    finally:
        if bar is not None:
            bar.close()
        if mf is not None:
            mf.close()
    run_seconds = time.perf_counter() - t_run
    export = None
    if main and cfg.export:
        export = export_model(
            run_dir / "export.safetensors",
            getattr(task, "export_model", task.ema),
            kind=task.export_kind,
            preset=task.preset,
            train_config=cfg.to_dict(),
            extra={"conditioning": data.info, "steps": cfg.steps, **task.export_extra()},
        )
    summary = {
        "run_dir": str(run_dir),
        "steps": cfg.steps,
        "resumed_from": start,
        "skipped_steps": skipped,
        "setup_seconds": setup_seconds,
        "train_seconds": run_seconds,
        "last": last,
        "export": str(export) if export else None,
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_info(),
        **_run_stats(task),
        **memory_stats(device),
    }
    curve = fidelity_curve(mpath) if main else []
    if curve:
        summary["fidelity_curve"] = curve
        plot_fidelity_curve(curve, run_dir / "fidelity.png", title=f"{cfg.kind} {cfg.preset}: {run_dir.name}")
    if main:
        write_json(run_dir / "summary.json", summary)
    return summary


def fidelity_curve(metrics_path: Path) -> list[dict]:
    """[{"step", "fidelity"}] of every checkpoint record of a run's metrics.jsonl that holds a fidelity score."""
    if not Path(metrics_path).exists():
        return []
    out = []
    for line in Path(metrics_path).read_text().splitlines():
        rec = json.loads(line)
        if "fidelity" in rec:
            out.append({"step": int(rec["step"]) + 1, "fidelity": rec["fidelity"]})
    return out


def plot_fidelity_curve(curve: list[dict], path: Path, title: str = "") -> None:
    """The teacher-ODE error (1 and 4 steps, each omega, 95 % intervals) and the omega response against the
    training step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [c["step"] for c in curve]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for wkey in curve[0]["fidelity"]["error"]:
        for n in ("1", "4"):
            d = [c["fidelity"]["error"][wkey][n] for c in curve]
            ax.errorbar(steps, [x["value"] for x in d], yerr=[[x["value"] - x["lo"] for x in d],
                                                             [x["hi"] - x["value"] for x in d]],
                        marker="o", capsize=2, label=f"ω = {wkey[1:]}, {n} step{'s' if n != '1' else ''}")
    ax.set_xlabel("training step")
    ax.set_ylabel("‖z − z_Heun40‖² / ‖z_Heun40‖²")
    ax.set_title("teacher-ODE error (validation captions)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    if "omega_response" in curve[0]["fidelity"]:
        d = [c["fidelity"]["omega_response"]["4"]["value"] for c in curve]
        ax2.plot(steps, d, marker="o", label="student, 4 steps")
        ax2.axhline(curve[0]["fidelity"]["teacher_omega_response"]["value"], color="k", ls="--",
                    label="teacher, Heun 40")
        ax2.set_xlabel("training step")
        ax2.set_ylabel("‖z(ω=2) − z(ω=5)‖² / ‖z(ω=5)‖²")
        ax2.set_title("ω response")
        ax2.set_ylim(bottom=0)
        ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
