#!/usr/bin/env python
"""Table 10: UNet against DiT. Both teachers (Heun, 40 steps, ω = 5) and the SoundCTM students of each
backbone at 1 step (ω = 5, ν = 1) and 16 steps (ω = 5, ν = 5).

    python reproduce/table10.py                 # tiny tier (CPU): builds what it needs, cached
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/table10.py
if __name__ == "__main__":
    sys.exit(cli(get_table("10")))
