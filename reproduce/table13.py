#!/usr/bin/env python
"""Table 13: the d_teacher ablation on the UNet (16 kHz setting): students distilled with l2 at time s
("w/o d_teacher") and with d_teacher, at 1, 8 and 16 steps (ω = 3.5, ν = 1 at 1 step; ω = 3, ν = 1.5 at 8;
ω = 3, ν = 2 at 16). The paper's 1-step SoundCTM row reads ω = 3.0, a value it marks nowhere else; both
1-step rows here use ω = 3.5, the setting of Table 1, whose rows they share.

    python reproduce/table13.py                 # tiny tier (CPU): builds what it needs, cached
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/table13.py
if __name__ == "__main__":
    sys.exit(cli(get_table("13")))
