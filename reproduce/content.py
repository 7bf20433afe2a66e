#!/usr/bin/env python
"""Content preservation across step counts (Figs. 3 and 6, quantified): for the same z_T and caption, the
CLAP-LPAPS and mel distance between each method's 1-step sample and its 2-, 4- and 16-step samples, for
SoundCTM (UNet, γ = 0: deterministic) and the two consistency-distillation students distilled from the same
teacher by the same loop, ConsistencyTTA-style ("cd") and AudioLCM-style ("lcm"), sampled with the
consistency models' multistep sampler, which re-noises between steps (the noise of item i seeded from item i).
Each method keeps its 1-step setting of Table 2 at every step count (SoundCTM ω = 3.5, ν = 1; ConsistencyTTA
ω = 4; AudioLCM ω = 5), so only the step count changes. Reference rows: VAE reconstruction vs ground truth
(the floor) and ground truth vs SoundCTM's 1-step samples (the random level).
Figure 3: results/<tier>/content_spectrograms.png (1 / 2 / 4 / 16 steps per method).

    python reproduce/content.py                 # tiny tier (CPU): builds what it needs, cached

Claims: at 2, 4 and 16 steps SoundCTM's distance to its own 1-step sample is far below each CD student's
(95 % intervals apart), on CLAP-LPAPS and on the mel distance; each is re-decided with decoded all-zero
latents against SoundCTM's n-step samples in place of SoundCTM's pair, which must fail.
"""

import sys

from soundctm.experiments import cli, get_table

# the declaration: soundctm/experiments/tables/content.py
if __name__ == "__main__":
    sys.exit(cli(get_table("content")))
