#!/usr/bin/env python
"""Table 2: the 16 kHz setting (UNet). The teacher (Heun, 40 steps), SoundCTM-UNet at 1-16 deterministic steps
(the paper's ω, ν per row) and the two consistency-distillation peers distilled from the same teacher by the
same loop (ConsistencyTTA-style CD and AudioLCM-style LCD, `soundctm/cd.py`) at 1-16 steps of the consistency
models' stochastic multistep sampler. The LDM baselines are listed with the paper's numbers, not run.
Labels mark with † the paper's numbers its authors measured from public checkpoints (the rest are quoted).

    python reproduce/table2.py                  # tiny tier (CPU): builds what it needs, cached
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/table2.py
if __name__ == "__main__":
    sys.exit(cli(get_table("2")))
