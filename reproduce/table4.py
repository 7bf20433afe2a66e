#!/usr/bin/env python
"""Table 4: full-band listening test (MUSHRA, OVAL and REL). Exports a webMUSHRA kit: 10 random test
clips, each trial with the hidden reference, the 3.5 kHz anchor, the teacher (Heun, 40 steps) and
SoundCTM-DiT at 1 step (ν = 1) and 16 steps (ν = 5), all at ω = 5, loudness-normalised; then
analyses webMUSHRA's ratings.

    python reproduce/table4.py                            # export the kit (tiny tier; models cached)
    python reproduce/table4.py --analyze mushra.csv       # post-screen, mean ± 95 % CI, claims
"""

import sys

from soundctm.experiments import get_table
from soundctm.experiments.listening import kit_cli

# the declaration: soundctm/experiments/tables/table4.py
if __name__ == "__main__":
    sys.exit(kit_cli(get_table("4")))
