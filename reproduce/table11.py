#!/usr/bin/env python
"""Table 11: the DSM term (DiT). Students distilled without the DSM term (λ_DSM = 0, Eq. 9) and with it,
at 1 step (ω = 5, ν = 1) and 8 and 16 steps (ω = 5, ν = 5). The full student is Table 3's.

    python reproduce/table11.py                 # tiny tier (CPU): builds what it needs, cached
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/table11.py
if __name__ == "__main__":
    sys.exit(cli(get_table("11")))
