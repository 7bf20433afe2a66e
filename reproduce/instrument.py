#!/usr/bin/env python
"""The instrument's sanity ladder: systems whose order we know, scored with every metric.

real-other (a second real take of each caption: each metric's noise floor at this sample size)
< vae-recon << teacher << teacher-euler-1 (one Euler step from sigma_max: the blurry posterior
mean) <= zeros / noise; shuffled-captions (real clips against another clip's captions) must score
far worse than real-other on the text-aware metrics. `<<`: the 95 % intervals do not overlap. Beside the
ladder, a paired diagnostic: the interval of teacher-euler-1 minus teacher over the same bootstrap draws of clips;
and the distillation check: the 1-step student against the teacher's Euler-1, paired, on every metric and on the
teacher-ODE error (the "fidelity" column: each sampler row's latents against the teacher's Heun-40 from the same
z_T, caption and ω; decoded zeros score 1).

    python reproduce/instrument.py          # writes results/tiny/instrument.{csv,md,json}
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/instrument.py
if __name__ == "__main__":
    sys.exit(cli(get_table("instrument")))
