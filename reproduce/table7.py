#!/usr/bin/env python
"""Table 7: semantic preservation across step counts. CLAP-LPAPS (and the mel distance) between each item's
1-step and 16-step samples of SoundCTM-DiT for γ ∈ {0, 0.2, 0.5, 1.0}, with the same z_T and caption;
ω = 5 and ν as Table 3's rows (ν = 1 at 1 step, ν = 5 at 16 steps; the paper leaves ω and ν of Table 7
open; one more γ = 0 row keeps ν = 1 at 16 steps, to separate the step count from ν); the γ noise of item i
is the same standard-normal draw for every γ (seeded from item i). The paper's two reference rows: VAE
reconstruction vs its ground truth (the floor) and ground truth vs the 1-step samples (the random level; on
the tiny tier the ground truth of item i is a real take of its test clip).
Mean ± 95 % bootstrap half-width over test clips, (sd: the standard deviation over items, the paper's ±).
Figures 4 / 7: results/<tier>/table7_spectrograms.png (1 / 4 / 16 steps × γ = 0 and 0.5).

    python reproduce/table7.py                  # tiny tier (CPU): builds what it needs, cached
    python reproduce/table7.py --tier paper     # AudioCaps + LAION-CLAP (bring the files)

Claim C4: with γ = 0 the 1- and 16-step samples are far closer than with any γ > 0: their 95 % intervals
do not overlap (≪) and the paired difference's interval lies above 0. Each is re-decided with decoded
all-zero latents against the γ = 0 16-step samples in place of the γ = 0 pair (a pair that shares no
content), which must fail.
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/table7.py
if __name__ == "__main__":
    sys.exit(cli(get_table("7")))
