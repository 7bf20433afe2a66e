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

from __future__ import annotations

from soundctm.experiments.catalog import AUDIO_LCM, CONSISTENCY_TTA, UNET_STUDENT
from soundctm.experiments.figures import spectrogram_figure
from soundctm.experiments.pairs import pair_row, trivial_pair
from soundctm.experiments.spec import Claim, Row, Table

STEPS = (1, 2, 4, 16)
METHODS = {  # name: (label, run, sampler, omega, nu) at Table 2's 1-step setting
    "soundctm": ("SoundCTM (UNet), γ = 0", UNET_STUDENT, "ctm", 3.5, 1.0),
    "consistency-tta": ("ConsistencyTTA-style CD", CONSISTENCY_TTA, "cm", 4.0, 1.0),
    "audiolcm": ("AudioLCM-style LCD", AUDIO_LCM, "cm", 5.0, 1.0),
}
CD = ("consistency-tta", "audiolcm")


def sampled(method: str, steps: int) -> Row:
    label, run, sampler, omega, nu = METHODS[method]
    return Row(f"{method}-{steps}", run=run, sampler=sampler, steps=steps, omega=omega, nu=nu,
               label=f"{label}, {steps} step{'s' if steps > 1 else ''}")


PAIRS = {(m, n): pair_row(f"{m}-1v{n}", sampled(m, 1), sampled(m, n), label=f"{METHODS[m][0]}: 1 vs {n} steps")
         for m in METHODS for n in STEPS[1:]}
GT = Row("real-other", source="real-other")

TABLE = Table(
    name="content",
    title="Content preservation: distance between each method's 1-step and n-step samples of the same items",
    description=__doc__.split("\n\n")[0],
    metrics=("lpaps", "mel"),
    rows=(
        pair_row("vae-recon-vs-gt", Row("vae-recon", source="vae-recon"), GT,
                 label="VAE reconstruction vs ground truth (floor)"),
        *PAIRS.values(),
        pair_row("gt-vs-soundctm-1", GT, sampled("soundctm", 1),
                 label="ground truth vs SoundCTM 1-step (random level)"),
        *(trivial_pair(PAIRS["soundctm", n], f"zeros-vs-soundctm-{n}") for n in STEPS[1:]),
    ),
    claims=tuple(
        Claim(f"(content-{n}-{cd}-{m})", f"at {n} steps SoundCTM (γ = 0) stays far closer to its 1-step sample "
              f"than {METHODS[cd][0]} ({m}; intervals apart)", "separated", m, f"soundctm-1v{n}", f"{cd}-1v{n}",
              subject=f"soundctm-1v{n}", trivial=f"zeros-vs-soundctm-{n}")
        for n in STEPS[1:] for cd in CD for m in ("lpaps", "mel")),
    figures=(spectrogram_figure(
        [(METHODS[m][0], [sampled(m, n) for n in STEPS]) for m in (*CD, "soundctm")],
        [f"{n} step{'s' if n > 1 else ''}" for n in STEPS],
        title="Same z_T and caption in each line: 1, 2, 4 and 16 steps of each method (Fig. 3)"),),
)
