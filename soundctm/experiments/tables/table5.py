"""Table 5: sound-intensity control with the UNet (16 kHz-setting) student, 16 steps for every method:
default generation, DITTO-2 (z_T optimised by Adam, lr 1, 70 iterations through the 1-step student at
ω = 3.5, ν = 1, then 16 steps at ν = 2 with γ = 0 and 0.2) and loss-based guidance (Algorithm 3, γ = 0).
Item i targets curve i mod 6 (rising, falling, flat, peak, dip, two-step; soundctm/apps/intensity.py); one
sample per caption, so on the tiny tier each curve gets 100 of the 600 items (120 test clips x 5 captions),
100 different captions (the paper: 200 pairs per curve). Default generation and guidance use DITTO-2's
final setting, ω = 3.5, ν = 2. Figures 10-11: results/<tier>/table5_intensity.png.

    python reproduce/table5.py                  # tiny tier (CPU): builds what it needs, cached
"""

from __future__ import annotations

from soundctm.experiments.applications import intensity_figure
from soundctm.experiments.catalog import UNET_STUDENT, reference_rows
from soundctm.experiments.spec import Claim, Items, Row, Table

COLS = ("MSE_dB2", "FAD_vgg", "CLAP")
P = lambda *v: dict(zip(COLS, v))  # the paper's numbers of a row
ST = dict(run=UNET_STUDENT, steps=16, omega=3.5, nu=2.0)
CONTROL = ("ditto-0", "ditto-02", "guidance")

TABLE = Table(
    name="table5",
    title="Table 5: sound-intensity control (UNet student, 16 steps)",
    description=__doc__.split("\n\n")[0],
    metrics=("intensity-mse", "fd", "clap"),
    paper_columns=COLS,
    rows=(
        Row("default", label="Default T2S generation (γ = 0)", **ST, paper=P(231.9, 2.08, 0.47)),
        Row("ditto-0", sampler="ditto", label="DITTO-2 (z_T optimisation), γ = 0", **ST, paper=P(60.2, 3.65, 0.38)),
        Row("ditto-02", sampler="ditto", gamma=0.2, label="DITTO-2, γ = 0.2", **ST, paper=P(50.4, 3.71, 0.41)),
        Row("guidance", sampler="guidance", label="Loss-based guidance (Alg. 3), γ = 0", **ST,
            paper=P(18.5, 3.04, 0.41)),
        *reference_rows("zeros"),
    ),
    claims=(
        *(Claim(f"(C7-mse-{a})", f"loss-based guidance has a lower intensity MSE than {a}", "improves",
                "intensity-mse", a, "guidance", subject="guidance") for a in ("default", "ditto-0", "ditto-02")),
        *(Claim(f"(C7-control-{b})", f"{b} beats default generation on intensity MSE", "improves", "intensity-mse",
                "default", b, subject=b) for b in ("ditto-0", "ditto-02")),
        Claim("(C7-fd)", "loss-based guidance has a better FD than DITTO-2 (γ = 0)", "improves", "fd", "ditto-0",
              "guidance", subject="guidance"),
        # the quality cost, as the paper reports it: default generation is better on FD and CLAP (no self-test:
        # a claim that a system is worse than another holds trivially for the decoded-zeros row)
        *(Claim(f"(C7-cost-{m}-{a})", f"{a} pays in {m} against default generation", "improves", m, a, "default")
          for m in ("fd", "clap") for a in CONTROL),
    ),
    items=Items(samples_per_caption=1),
    figures=(intensity_figure,),
)
