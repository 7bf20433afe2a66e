#!/usr/bin/env python
"""Diagnostic for Table 3's claim (b), "quality improves from 1 to 16 steps": is it the student or the
task? The teacher's own Heun curve over the same step counts, the student at nu = 1 for every step count
(Table 3 switches to nu = 5 at 8 steps), and a student distilled three times longer.

    python reproduce/steps_diagnostic.py      # writes results/tiny/steps_diagnostic.{csv,md,json}
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/steps_diagnostic.py
if __name__ == "__main__":
    sys.exit(cli(get_table("steps_diagnostic")))
