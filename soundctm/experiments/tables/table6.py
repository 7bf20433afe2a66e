"""Table 6: the GAN term (16 kHz setting, UNet). Students distilled with and without a GAN loss on decoded
audio (multi-period + multi-band multi-scale STFT discriminators, adversarial + feature matching, own optimiser,
from halfway through training), at 2
and 4 steps (ω = 3.5, ν = 1, Table 2's settings for those steps; the paper leaves them open), with the peak
training memory of each (measured in a fresh process; on CPU the resident memory training adds).

    python reproduce/table6.py                  # tiny tier (CPU): builds what it needs, cached
"""

from __future__ import annotations

from soundctm.experiments.catalog import UNET_STUDENT, reference_rows, student_row, variant
from soundctm.experiments.spec import Claim, Table

COLS = ("FAD_vgg", "KL_passt", "IS_passt", "CLAP", "train memory MiB")
P = lambda *v: dict(zip(COLS, v))  # the paper's numbers of a row
GAN_START = 150  # the GAN term joins halfway through the tiny students' 300 steps (the paper gives no schedule)
RUNS = {"no-gan": ("w/o GAN", UNET_STUDENT, (P(2.43, 1.29, 7.50, 0.42, 46782), P(2.28, 1.21, 7.63, 0.43, None))),
        "gan": ("w/ GAN", variant(UNET_STUDENT, gan=True, gan_start=GAN_START),
                 (P(2.91, 1.37, 6.29, 0.37, 64492), P(2.37, 1.35, 7.53, 0.41, None)))}

TABLE = Table(
    name="table6",
    title="Table 6: GAN loss ablation (UNet, 16 kHz setting)",
    description=__doc__.split("\n\n")[0],
    paper_columns=COLS,
    rows=(
        *(student_row(n, 3.5, 1.0, name=f"{g}-{n}", run=run, label=label, paper=paper[i], train_memory=(n == 2))
          for g, (label, run, paper) in RUNS.items() for i, n in enumerate((2, 4))),
        *reference_rows("vae-recon", "zeros"),
    ),
    claims=(
        Claim("(memory)", "the GAN term raises peak training memory by at least 10 %", "heavier", None, "gan-2",
              "no-gan-2", margin=1.1),
        *(Claim(f"({n}-{m})", f"at {n} steps the GAN term does not improve quality: w/o GAN within 0.1 on q of "
                f"w/ GAN or better ({m})", "close", m, f"no-gan-{n}", f"gan-{n}", margin=0.1, subject=f"no-gan-{n}")
          for n in (2, 4) for m in ("fd", "kl", "clap")),
    ),
)
