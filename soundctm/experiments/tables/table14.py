"""Table 14: zero-shot bandwidth extension with the UNet (16 kHz-setting) student. The test clips are
low-passed (an ideal FFT low-pass) at the cut-off that keeps the paper's share of the band, 3 kHz at
44.1 kHz, i.e. 1088 Hz at 16 kHz; the student extends them with data consistency at every step
(soundctm/apps/bwe.py) in 4 and 8 steps (ω = 3.5, ν = 1, γ = 0, each of the clip's captions as the prompt,
one sample each). LSD against the test clip, per item, over all 120 test clips on the tiny tier (600 items;
the paper: 500 clips). A control row (not in the paper) generates from the caption alone and puts the
observed band in at the end only. Figure 14: results/<tier>/table14_spectrograms.png.

    python reproduce/table14.py                 # tiny tier (CPU): builds what it needs, cached
"""

from __future__ import annotations

from soundctm.experiments.applications import bwe_figure
from soundctm.experiments.catalog import UNET_STUDENT, reference_rows
from soundctm.experiments.spec import Claim, Items, Row, Table

BAND = {"cutoff_hz": 3000.0, "at_rate": 44100}  # the same share of the band at the tier's sample rate
EXT = dict(sampler="bwe", run=UNET_STUDENT, omega=3.5, nu=1.0, app=BAND, label="Bandwidth extension with SoundCTM")

TABLE = Table(
    name="table14",
    title="Table 14: zero-shot bandwidth extension (UNet student)",
    description=__doc__.split("\n\n")[0],
    metrics=("lsd",),
    paper_columns=("LSD",),
    rows=(
        Row("lowpass", source="lowpass", app=BAND, label="Low-passed (observed signal)", paper={"LSD": 28.8}),
        Row("bwe-4", steps=4, paper={"LSD": 13.3}, **EXT),
        Row("bwe-8", steps=8, paper={"LSD": 12.9}, **EXT),
        Row("paste-8", steps=8, **{**EXT, "app": {**BAND, "every_step": False},
                                   "label": "control: 8-step generation, observed band put in at the end only"}),
        *reference_rows("zeros"),
    ),
    claims=(
        *(Claim(f"(C8-{n})", f"bandwidth extension in {n} steps lowers LSD against the low-passed input", "improves",
                "lsd", "lowpass", f"bwe-{n}", subject=f"bwe-{n}") for n in (4, 8)),
        Claim("(C8-steps)", "8 steps are better than 4", "improves", "lsd", "bwe-4", "bwe-8", subject="bwe-8"),
        Claim("(C8-consistency)", "consistency during sampling beats putting the band into a free generation",
              "improves", "lsd", "paste-8", "bwe-8", subject="bwe-8"),
    ),
    items=Items(samples_per_caption=1),
    figures=(bwe_figure,),
)
