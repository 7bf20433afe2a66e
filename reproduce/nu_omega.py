#!/usr/bin/env python
"""ν and ω (Figs. 5, 12, 13): FD and CLAP of SoundCTM-DiT over a ν x ω grid. Fig. 5: the student distilled
with ω ~ U[2, 5] (the catalog's STUDENT) at 8 steps; Fig. 12: a student distilled with ω ~ U[1, 7] (the same
recipe and seeds, `omega_range` (1, 7)) at 1 and 16 steps. γ = 0 throughout. The grids are smaller than
the paper's (which it does not list) so that the tiny tier runs them in minutes: ν ∈ {1, 3, 5} x ω ∈ {2, 3.5, 5}
(Fig. 5) and ν ∈ {1, 3, 5} x ω ∈ {1, 4, 7} (Fig. 12); each row scores every test clip's captions with one
sample per caption (half the tier's items; --samples-per-caption or --units override it).
Figures: results/<tier>/nu_omega_fig5.png, nu_omega_fig12.png (values and intervals also in the .csv
beside them) and nu_omega_fig13.png (ν = 1 vs ν = 5 at ω = 5, 16 steps, the same z_T and caption).

    python reproduce/nu_omega.py                # tiny tier (CPU): builds what it needs, cached

Claim C5: at 8 steps (Fig. 5) and at 16 steps (Fig. 12) raising ν from 1 to 5 improves FD and CLAP at every ω
(the paired improvement's 95 % interval above 0). Fig. 12's 1-step claim: at every ν, ω = 1 gives a worse CLAP
than ω = 4. Each quality claim is re-decided with the decoded-zeros row in place of its better row.
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/nu_omega.py
if __name__ == "__main__":
    sys.exit(cli(get_table("nu_omega")))
