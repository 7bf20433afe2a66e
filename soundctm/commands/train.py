"""`soundctm train-teacher` and `soundctm distill`.

    soundctm train-teacher --preset tiny-dit --steps 1500 --run-dir runs/teacher
    soundctm distill --teacher runs/teacher/export.safetensors --distance d_teacher --run-dir runs/student
    soundctm distill ... --workers 2 [--gpus]      # Ray Train (soundctm.distributed)
    ... --dry-run                                   # print the resolved config (JSON) and exit

A run directory holds config.json (the resolved settings), metrics.jsonl (one line per step),
checkpoints/ (training state, resumable: rerun the same command) and export.safetensors (EMA weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from soundctm.cmdline import CLIError, Parser, nonnegative_int, out_dir, positive_float, positive_int, run
from soundctm.distributed import run_training_ray
from soundctm.presets import model_preset
from soundctm.train.checkpoint import load_latest, save_checkpoint
from soundctm.train.config import TrainConfig, resolve_config
from soundctm.train.distill import tiny_student_config
from soundctm.train.loop import run_training, run_training_dict
from soundctm.train.teacher import tiny_teacher_config

__all__ = ["train_teacher_main", "distill_main", "build_parser", "config_from_args", "train_on_ray"]


def train_on_ray(config: TrainConfig, run_dir, *, workers: int, **kw) -> dict:
    """`run_training(config, run_dir)` on `workers` Ray Train workers (`soundctm.distributed`); kw: gpus,
    max_failures, storage_path, init_kwargs, progress. Returns the run's summary."""
    cfg = resolve_config(config)
    return run_training_ray(run_training_dict, cfg.to_dict(), run_dir, load_latest=load_latest,
                            save_checkpoint=save_checkpoint, workers=workers, **kw)


def build_parser(kind: str) -> argparse.ArgumentParser:
    prog = "soundctm train-teacher" if kind == "teacher" else "soundctm distill"
    desc = (
        "train an EDM teacher (VE, Appendix C)"
        if kind == "teacher"
        else "distil a SoundCTM student from an exported teacher (Algorithm 2)"
    )
    ap = Parser(prog=prog, description=desc)  # with --threads N (torch.set_num_threads) and --version
    ap.add_argument(
        "--preset", default="tiny-dit", help="model preset (tiny-dit, tiny-unet, paper-dit, paper-unet)"
    )
    ap.add_argument("--steps", type=positive_int, default=None, help="training steps")
    ap.add_argument("--batch-size", type=positive_int, default=None, help="global batch size (split over workers)")
    ap.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: preset/kind default)")
    ap.add_argument("--optimizer", choices=("adamw", "radam"), default=None)
    ap.add_argument("--seed", type=nonnegative_int, default=0)
    ap.add_argument("--run-dir", default=None, help="output directory (default: runs/<kind>-<preset>)")
    ap.add_argument("--ema-mu", type=float, default=None)
    ap.add_argument("--p-uncond", type=float, default=None, help="caption dropout probability")
    ap.add_argument("--warmup-steps", type=int, default=None)
    ap.add_argument(
        "--data",
        choices=("tiny", "synthetic"),
        default="tiny",
        help="tiny: the tiny corpus latents + tiny CLAP conditioning; synthetic: random (tests)",
    )
    ap.add_argument("--cache", default=None, help="cache root (default: $SOUNDCTM_CACHE)")
    ap.add_argument("--checkpoint-every", type=positive_int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off",
                    help="mixed-precision autocast of the networks' forward passes, losses in fp32 (default off)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="print the resolved config (JSON) and exit")
    if kind == "distill":
        ap.add_argument(
            "--teacher", default=None, help="teacher export (export.safetensors of train-teacher)"
        )
        ap.add_argument("--distance", choices=("d_teacher", "l2_s", "l2_0"), default="d_teacher")
        ap.add_argument("--omega-min", type=float, default=None)
        ap.add_argument("--omega-max", type=float, default=None)
        ap.add_argument("--dsm-weight", type=float, default=None)
        ap.add_argument(
            "--max-ode-steps", type=int, default=None, help="longest teacher solve t->u in grid steps"
        )
        ap.add_argument("--gan", action="store_true", help="GAN term on decoded audio (default off)")
        ap.add_argument("--gan-weight", type=float, default=None)
        ap.add_argument("--gan-start", type=int, default=None)
        ap.add_argument("--workers", type=nonnegative_int, default=0, help="run under Ray Train with this many workers")
        ap.add_argument("--gpus", action="store_true", help="one GPU per Ray worker (NCCL)")
        ap.add_argument("--max-failures", type=int, default=2, help="Ray: restarts from the last checkpoint")
    return ap


def config_from_args(kind: str, args: argparse.Namespace) -> TrainConfig:
    """A `TrainConfig` from parsed arguments: flags left out keep the kind's defaults."""
    try:
        corpus = model_preset(args.preset).corpus
    except ValueError:  # an unknown preset: `resolve_config` names it
        corpus = None
    # a preset on its built-in corpus (`ModelPreset.corpus`: the tiny presets') starts from that recipe's settings
    tiny = args.data == "tiny" and corpus == args.data
    if kind == "teacher":
        base = tiny_teacher_config(args.preset) if tiny else TrainConfig(kind="teacher", preset=args.preset)
    else:
        base = (
            tiny_student_config(args.teacher, args.preset, args.distance)
            if tiny
            else TrainConfig(
                kind="distill", preset=args.preset, distance=args.distance, teacher_path=args.teacher
            )
        )
    over = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "optimizer": args.optimizer,
        "ema_mu": args.ema_mu,
        "p_uncond": args.p_uncond,
        "warmup_steps": args.warmup_steps,
        "checkpoint_every": args.checkpoint_every,
        "threads": args.threads,
    }
    d = {k: v for k, v in over.items() if v is not None}
    d.update(seed=args.seed, data=args.data, cache=args.cache, device=args.device, amp=args.amp)
    if kind == "distill":
        if (args.omega_min is None) != (args.omega_max is None):
            raise CLIError("give both --omega-min and --omega-max")
        if args.omega_min is not None:
            d["omega_range"] = (args.omega_min, args.omega_max)
        for k in ("dsm_weight", "max_ode_steps", "gan_weight", "gan_start"):
            if getattr(args, k) is not None:
                d[k] = getattr(args, k)
        d.update(teacher_path=args.teacher, distance=args.distance, gan=args.gan)
    return dataclasses.replace(base, **d)


def _main(kind: str, argv) -> int:
    args = build_parser(kind).parse_args(argv)
    out_dir(args.run_dir or f"runs/{kind}-{args.preset}", "--run-dir")
    try:
        cfg = resolve_config(config_from_args(kind, args))
    except (ValueError, NotImplementedError) as e:
        raise CLIError(str(e)) from None
    run_dir = args.run_dir or f"runs/{kind}-{cfg.preset}"
    workers = getattr(args, "workers", 0)
    if args.dry_run:
        out = {"run_dir": run_dir, "config": cfg.to_dict()}
        if workers:
            out["ray"] = {"workers": workers, "gpus": args.gpus, "max_failures": args.max_failures}
        print(json.dumps(out, indent=2))
        return 0
    if workers:
        summary = train_on_ray(
            cfg, run_dir, workers=workers, gpus=args.gpus, max_failures=args.max_failures
        )
    else:
        summary = run_training(cfg, run_dir, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0


def train_teacher_main(argv=None) -> int:
    """`soundctm train-teacher`."""
    return run("soundctm train-teacher", lambda a: _main("teacher", a), sys.argv[1:] if argv is None else argv)


def distill_main(argv=None) -> int:
    """`soundctm distill`."""
    return run("soundctm distill", lambda a: _main("distill", a), sys.argv[1:] if argv is None else argv)
