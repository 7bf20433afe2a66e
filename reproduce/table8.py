#!/usr/bin/env python
"""Table 8: inference speed at batch 1, end to end (text encoder + sampler + decoder), of SoundCTM and the two
consistency-distillation peers at 1, 2, 4 and 8 steps, median of repeated calls after warm-up, device named; each
timed with the unconditional branch skipped at ν = 1 (ours) and evaluated anyway (the official samplers). The
tiny tier times the tier's trained models; the paper tier the paper-size architectures with random weights.

    python reproduce/table8.py                  # tiny tier (CPU): times the tiny models (built if missing)
    python reproduce/table8.py --tier paper     # paper-size architectures, random weights (a GPU)
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/table8.py
if __name__ == "__main__":
    sys.exit(cli(get_table("8")))
