#!/usr/bin/env python
"""Table 3: full-band text-to-sound. The teacher (Heun, 40 steps) against SoundCTM-DiT with 1-16
deterministic steps (ω = 5; ν = 1 for 1-4 steps, ν = 5 for 8-16), inference time, and the
instrument's reference rows every quality claim is anchored to.

    python reproduce/table3.py                  # tiny tier (CPU): builds what it needs, cached
    python reproduce/table3.py --tier paper     # AudioCaps + pretrained embedders (bring the files)
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/table3.py
if __name__ == "__main__":
    sys.exit(cli(get_table("3")))
