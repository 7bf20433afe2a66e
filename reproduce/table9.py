#!/usr/bin/env python
"""Table 9: 16 kHz listening test (MUSHRA, OVAL and REL, the protocol of Table 4). Exports a webMUSHRA
kit: 10 random test clips, each trial with the hidden reference, the 3.5 kHz anchor and SoundCTM-UNet
at 1 and 4 steps (ω = 3.5, ν = 1), loudness-normalised; AudioLCM is listed, not run.

    python reproduce/table9.py                            # export the kit (tiny tier; models cached)
    python reproduce/table9.py --analyze mushra.csv       # post-screen, mean ± 95 % CI, claims
"""

import sys

from soundctm.experiments import get_table
from soundctm.experiments.listening import kit_cli

# the declaration: soundctm/experiments/tables/table9.py
if __name__ == "__main__":
    sys.exit(kit_cli(get_table("9")))
