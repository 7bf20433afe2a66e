"""Table 10: UNet against DiT. Both teachers (Heun, 40 steps, ω = 5) and the SoundCTM students of each
backbone at 1 step (ω = 5, ν = 1) and 16 steps (ω = 5, ν = 5).

    python reproduce/table10.py                 # tiny tier (CPU): builds what it needs, cached
"""

from __future__ import annotations

from soundctm.experiments.catalog import STUDENT, UNET_STUDENT, UNET_TEACHER, reference_rows, student_row, teacher_row
from soundctm.experiments.spec import Claim, Table

COLS = ("FD_openl3", "KL_passt", "CLAP")
P = lambda *v: dict(zip(COLS, v))  # the paper's numbers of a row
M = ("fd", "kl", "clap")

TABLE = Table(
    name="table10",
    title="Table 10: UNet against DiT",
    description=__doc__.split("\n\n")[0],
    paper_columns=COLS,
    rows=(
        teacher_row("unet-teacher", run=UNET_TEACHER, label="UNet teacher, Heun", paper=P(72.2, 1.49, 0.48)),
        teacher_row("dit-teacher", label="DiT teacher, Heun", paper=P(68.8, 1.59, 0.46)),
        student_row(1, name="unet-1", run=UNET_STUDENT, label="SoundCTM-UNet", paper=P(89.8, 2.12, 0.26)),
        student_row(16, 5.0, 5.0, name="unet-16", run=UNET_STUDENT, label="SoundCTM-UNet", paper=P(65.1, 1.27, 0.43)),
        student_row(1, name="dit-1", run=STUDENT, label="SoundCTM-DiT", paper=P(77.4, 1.70, 0.35)),
        student_row(16, 5.0, 5.0, name="dit-16", run=STUDENT, label="SoundCTM-DiT", paper=P(65.6, 1.22, 0.42)),
        *reference_rows("vae-recon", "zeros"),
    ),
    claims=(
        *(Claim(f"(1-{m})", f"at 1 step DiT beats UNet ({m})", "improves", m, "unet-1", "dit-1", subject="dit-1")
          for m in M),
        *(Claim(f"(16-{m})", f"at 16 steps DiT and UNet are comparable: within 0.1 of each other on q ({m})",
                "comparable", m, "dit-16", "unet-16", margin=0.1, subject="dit-16") for m in M),
    ),
)
