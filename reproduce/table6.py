#!/usr/bin/env python
"""Table 6: the GAN term (16 kHz setting, UNet). Students distilled with and without a GAN loss on decoded
audio (multi-period + multi-band multi-scale STFT discriminators, adversarial + feature matching, own optimiser,
from halfway through training), at 2
and 4 steps (ω = 3.5, ν = 1, Table 2's settings for those steps; the paper leaves them open), with the peak
training memory of each (measured in a fresh process; on CPU the resident memory training adds).

    python reproduce/table6.py                  # tiny tier (CPU): builds what it needs, cached
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/table6.py
if __name__ == "__main__":
    sys.exit(cli(get_table("6")))
