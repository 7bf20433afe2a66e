#!/usr/bin/env python
"""Table 14: zero-shot bandwidth extension with the UNet (16 kHz-setting) student. The test clips are
low-passed (an ideal FFT low-pass) at the cut-off that keeps the paper's share of the band, 3 kHz at
44.1 kHz, i.e. 1088 Hz at 16 kHz; the student extends them with data consistency at every step
(soundctm/apps/bwe.py) in 4 and 8 steps (ω = 3.5, ν = 1, γ = 0, each of the clip's captions as the prompt,
one sample each). LSD against the test clip, per item, over all 120 test clips on the tiny tier (600 items;
the paper: 500 clips). A control row (not in the paper) generates from the caption alone and puts the
observed band in at the end only. Figure 14: results/<tier>/table14_spectrograms.png.

    python reproduce/table14.py                 # tiny tier (CPU): builds what it needs, cached
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/table14.py
if __name__ == "__main__":
    sys.exit(cli(get_table("14")))
