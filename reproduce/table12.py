#!/usr/bin/env python
"""Table 12: the d_teacher ablation (DiT). Students distilled with l2 at time s ("w/o d_teacher"; the
paper does not say which l2, Table 13 suggests time s) and with d_teacher, at 1 step (ω = 5, ν = 1) and 8
and 16 steps (ω = 5, ν = 5). The full student is Table 3's.

    python reproduce/table12.py                 # tiny tier (CPU): builds what it needs, cached
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/table12.py
if __name__ == "__main__":
    sys.exit(cli(get_table("12")))
