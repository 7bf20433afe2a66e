"""`soundctm demo`: Algorithm 1 on a randomly initialised tiny student (a CPU smoke demo, no weights needed)."""

from __future__ import annotations

import time

import torch

from soundctm.cmdline import MAX_STEPS, CLIError, Parser, finite_float, nonnegative_int, run, steps_int
from soundctm.presets import _presets, build_student
from soundctm.rng import prior_noise
from soundctm.sampling import karras_steps, sample


def _demo(argv) -> int:
    ap = Parser(prog="soundctm demo", description=__doc__)
    ap.add_argument("--preset", default="tiny-dit", help="model preset (default tiny-dit; see soundctm params)")
    ap.add_argument("--steps", type=steps_int, nargs="+", default=[1, 2, 4, 8, 16],
                    help=f"step counts to sample with, each 1 to {MAX_STEPS} (default 1 2 4 8 16)")
    ap.add_argument("--omega", type=finite_float, default=5.0, help="CFG scale (default 5)")
    ap.add_argument("--nu", type=finite_float, default=1.0, help="nu-sampling weight (default 1)")
    ap.add_argument("--seed", type=nonnegative_int, default=0, help="weights and noise seed (default 0)")
    args = ap.parse_args(argv)
    if args.preset not in _presets():
        raise CLIError(f"unknown model preset {args.preset!r}; expected one of {sorted(_presets())}")
    student = build_student(args.preset, seed=args.seed).eval()
    c, t = student.latent_shape
    l, d = student.cond_shape
    z = prior_noise([args.seed], (c, t))
    g = torch.Generator().manual_seed(args.seed)
    cond = torch.nn.functional.normalize(torch.randn(1, l, d, generator=g), dim=-1)
    uncond = torch.zeros(1, l, d)
    print(f"{args.preset}: latent {c}x{t}, cond {l}x{d}, omega={args.omega}, nu={args.nu} (random weights)")
    ref = None
    for n in args.steps:
        t0 = time.perf_counter()
        out = sample(student, z, karras_steps(n), cond, uncond, omega=args.omega, nu=args.nu)
        dt = time.perf_counter() - t0
        diff = "" if ref is None else f"  |z - z(1 step)| = {float((out - ref).abs().mean()):.4f}"
        ref = out if ref is None else ref
        print(f"  {n:2d} steps: {dt * 1000:7.1f} ms  std={float(out.std()):.4f}{diff}")
    return 0


def main(argv=None) -> int:
    """`soundctm demo`."""
    return run("soundctm demo", _demo, argv)
