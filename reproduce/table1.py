#!/usr/bin/env python
"""Table 1: the CTM distance at 1 step (16 kHz setting, UNet). The teacher (Heun, 40 steps) against three
1-step students that differ only in the distance of the CTM loss: l2 after carrying both jumps to time 0
(CTM's choice), l2 at time s, and d_teacher at time s (the teacher's blocks, Eq. 5). ω = 3.5, ν = 1.

    python reproduce/table1.py                  # tiny tier (CPU): builds what it needs, cached
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/table1.py
if __name__ == "__main__":
    sys.exit(cli(get_table("1")))
