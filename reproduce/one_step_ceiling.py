#!/usr/bin/env python
"""Diagnostic for the distillation recipe: how low can the tiny student's 1-step teacher-ODE error go at all?

    python reproduce/one_step_ceiling.py                   # 1024 training pairs, 1200 steps (resumes the pairs)
    python reproduce/one_step_ceiling.py --pairs 256 --steps 200

SoundCTM learns its 1-step jump sigma_max -> 0 by bootstrapping: each target is the teacher's solve over a few
grid steps followed by the EMA student's own jump. This script takes the bootstrap away. It solves the
teacher's ODE in full (Heun on the 40-point Karras grid, CFG omega, the probe's reference solver) from
`--pairs` prior draws z_T with training captions, half at omega 2 and half at omega 5, and regresses the
student's jump G(z_T, sigma_max, 0) onto those endpoints (l2, batch 8, RAdam, warm-up then a cosine decay,
starting from the teacher's weights as every distillation does). Its error on the 40 validation items of the
recipe sweep (`soundctm.train.distill.validation_probe`, the same seeds and captions) then bounds what the
same network, given that many teacher solves, can reach by direct regression, beside its error on training pairs
it has seen (a network that cannot fit them is short of capacity; one that fits them but not the validation
items is short of data). The teacher's solves are stored once under `<cache>/tiny/one-step-ceiling/`.
The record goes to `results/tiny/one_step_ceiling-<pairs>x<steps>.json` with its provenance.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from soundctm import fidelity
from soundctm.data.latent_cache import file_checksum
from soundctm.edm import SIGMA_MAX, karras_sigmas
from soundctm.io import load_safetensors, save_safetensors, settings_hash, write_json
from soundctm.paths import cache_dir, committed_tiny_dir
from soundctm.presets import build_student
from soundctm.provenance import provenance
from soundctm.rng import prior_noise
from soundctm.sampling import heun_sample
from soundctm.train.checkpoint import load_export
from soundctm.train.config import lr_at
from soundctm.train.data import tiny_conditioned
from soundctm.train.distill import validation_probe

PAIR_SEED = 20_000  # prior-noise seeds PAIR_SEED + i of the training pairs (the validation items use 10000 + i)
OMEGAS = (2.0, 5.0)
CHUNK = 32
FINAL_LR_FRACTION = 0.05  # the cosine decays to lr x this (the recipe sweep's)


def teacher_pairs(teacher, checksum: str, data, n: int, log=print) -> dict[str, torch.Tensor]:
    """n (z_T, caption pair, omega, teacher endpoint) tuples, stored once per (teacher checksum, data, n)."""
    key = settings_hash({"teacher": checksum, "data": data.info, "n": n,
                         "seed": PAIR_SEED, "omegas": OMEGAS, "grid": fidelity.REFERENCE_GRID})
    path = cache_dir() / "tiny" / "one-step-ceiling" / f"pairs-{n}-{key}.safetensors"
    if path.exists():
        return load_safetensors(path)[0]
    g = torch.Generator().manual_seed(PAIR_SEED)
    pair = torch.randint(0, data.cond.shape[0], (n,), generator=g)
    omega = torch.tensor([OMEGAS[(i // CHUNK) % len(OMEGAS)] for i in range(n)])
    z_T = prior_noise([PAIR_SEED + i for i in range(n)], tuple(teacher.latent_shape))
    z_ref = torch.empty_like(z_T)
    grid = karras_sigmas(fidelity.REFERENCE_GRID)
    t0 = time.perf_counter()
    for a in range(0, n, CHUNK):
        b = min(a + CHUNK, n)
        z_ref[a:b] = heun_sample(teacher, z_T[a:b], grid, data.cond[pair[a:b]], data.uncond, omega=float(omega[a]))
        log(f"  teacher solves {b}/{n} ({time.perf_counter() - t0:.0f} s)")
    tensors = {"z_T": z_T, "z_ref": z_ref, "pair": pair, "omega": omega}
    save_safetensors(path, tensors, {"what": "teacher Heun endpoints for the one-step ceiling", "key": key})
    return tensors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=1024, help="teacher solves to regress on (default 1024)")
    ap.add_argument("--steps", type=int, default=1200, help="regression steps (default 1200)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="default results/tiny/one_step_ceiling-<pairs>x<steps>.json")
    args = ap.parse_args(argv)
    for name in ("pairs", "steps", "batch", "eval_every", "threads"):
        if getattr(args, name) <= 0:
            print(f"one_step_ceiling: error: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            return 2
    if not args.lr > 0 or args.warmup < 0:
        print("one_step_ceiling: error: need --lr > 0 and --warmup >= 0", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    args.out = args.out or f"results/tiny/one_step_ceiling-{args.pairs}x{args.steps}.json"
    teacher_path = committed_tiny_dir() / "teacher-tiny-dit.safetensors"
    teacher = load_export(teacher_path).eval().requires_grad_(False)
    preset = teacher.preset
    data = tiny_conditioned(preset, split="train", log=lambda *a, **k: None)
    probe = validation_probe(teacher, preset, None, 40, "cpu")
    t0 = time.perf_counter()
    pairs = teacher_pairs(teacher, file_checksum(teacher_path), data, args.pairs, log=lambda m: print(m, flush=True))
    solve_s = time.perf_counter() - t0
    cond = data.cond[pairs["pair"]]
    fit_idx = torch.arange(min(64, args.pairs))  # training pairs the fit is measured on

    student = build_student(preset.name, seed=0, teacher=teacher).requires_grad_(True).train()
    opt = torch.optim.RAdam(student.parameters(), lr=args.lr)

    @torch.no_grad()
    def evaluate(step: int) -> dict:
        student.eval()
        f = fidelity.summarize(student, probe, steps=(1,))
        z = student(pairs["z_T"][fit_idx], SIGMA_MAX, 0.0, cond[fit_idx], pairs["omega"][fit_idx])
        fit = fidelity.bootstrap_mean(fidelity.relative_sq_error(z, pairs["z_ref"][fit_idx]))
        student.train()
        return {"step": step, "validation": f, "train_fit": fit}

    g = torch.Generator().manual_seed(1)
    curve = [evaluate(0)]
    t1 = time.perf_counter()
    for step in range(args.steps):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, args.lr, args.warmup, args.steps, FINAL_LR_FRACTION)
        idx = torch.randint(0, args.pairs, (args.batch,), generator=g)
        z = student(pairs["z_T"][idx], SIGMA_MAX, 0.0, cond[idx], pairs["omega"][idx])
        loss = (z - pairs["z_ref"][idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            curve.append(evaluate(step + 1))
            e = curve[-1]["validation"]["error"]
            print(f"step {step + 1}: validation 1-step " + ", ".join(
                f"{w} {d['1']['value']:.3f} [{d['1']['lo']:.3f}, {d['1']['hi']:.3f}]" for w, d in e.items())
                + f"; training pairs {curve[-1]['train_fit']['value']:.3f} ({time.perf_counter() - t1:.0f} s)",
                flush=True)
    write_json(args.out, {
        "meta": provenance(tier="tiny", teacher="teacher-tiny-dit", threads=args.threads, pairs=args.pairs,
                           steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup,
                           pair_seeds=f"{PAIR_SEED} + i", omegas=list(OMEGAS),
                           probe="40 validation clips (first caption), seeds 10000+i",
                           teacher_solve_seconds=round(solve_s, 1),
                           regression_seconds=round(time.perf_counter() - t1, 1)),
        "curve": curve})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
