#!/usr/bin/env python
"""Diagnostic for Tables 1 and 13: how far did each UNet student move from the teacher it starts from, and
how far apart are the distance variants, against two training seeds of one variant?

    python reproduce/weight_drift.py     # the cached students of Table 1 (trains what is missing)

Relative L2 distance ||a - b|| / ||teacher|| over the parameters the student shares with the teacher
(its own s-embedding excluded). If the variants are closer to each other than two seeds of one variant,
the distance of the CTM loss cannot be what separates their samples at this distillation length.
"""

import sys

import torch

from soundctm.experiments.catalog import UNET_STUDENT, UNET_TEACHER, variant
from soundctm.experiments.main import make_runner, parser
from soundctm.io import load_safetensors

RUNS = {"l2_0": variant(UNET_STUDENT, distance="l2_0"), "l2_s": variant(UNET_STUDENT, distance="l2_s"),
        "d_teacher": UNET_STUDENT}


def main(argv=None) -> int:
    args = parser(__doc__).parse_args(argv)
    runner = make_runner(args)
    teacher = load_safetensors(runner.exports(UNET_TEACHER)[0])[0]
    students = {f"{d} seed {s}": load_safetensors(p)[0]
                for d, run in RUNS.items() for s, p in zip(run.seeds, runner.exports(run))}
    keys = [k for k, v in teacher.items() if v.is_floating_point()
            and all(k in w and w[k].shape == v.shape for w in students.values())]
    flat = lambda w: torch.cat([w[k].double().flatten() for k in keys])  # noqa: E731
    t = flat(teacher)
    vec = {n: flat(w) for n, w in students.items()}
    rel = lambda a, b: float((a - b).norm() / t.norm())  # noqa: E731
    print(f"{len(keys)} parameter tensors shared with the teacher; relative L2 distance / ||teacher||")
    for n, v in vec.items():
        print(f"  {n:18s} vs teacher   {rel(v, t):.5f}")
    for a, b in (("d_teacher seed 0", "l2_0 seed 0"), ("d_teacher seed 0", "l2_s seed 0"),
                 ("l2_0 seed 0", "l2_s seed 0"), ("d_teacher seed 0", "d_teacher seed 1"),
                 ("d_teacher seed 0", "d_teacher seed 2"), ("l2_s seed 0", "l2_s seed 1")):
        print(f"  {a} vs {b}: {rel(vec[a], vec[b]):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
