#!/usr/bin/env python
"""Table 5: sound-intensity control with the UNet (16 kHz-setting) student, 16 steps for every method:
default generation, DITTO-2 (z_T optimised by Adam, lr 1, 70 iterations through the 1-step student at
ω = 3.5, ν = 1, then 16 steps at ν = 2 with γ = 0 and 0.2) and loss-based guidance (Algorithm 3, γ = 0).
Item i targets curve i mod 6 (rising, falling, flat, peak, dip, two-step; soundctm/apps/intensity.py); one
sample per caption, so on the tiny tier each curve gets 100 of the 600 items (120 test clips x 5 captions),
100 different captions (the paper: 200 pairs per curve). Default generation and guidance use DITTO-2's
final setting, ω = 3.5, ν = 2. Figures 10-11: results/<tier>/table5_intensity.png.

    python reproduce/table5.py                  # tiny tier (CPU): builds what it needs, cached
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/table5.py
if __name__ == "__main__":
    sys.exit(cli(get_table("5")))
