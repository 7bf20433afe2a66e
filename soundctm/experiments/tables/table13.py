"""Table 13: the d_teacher ablation on the UNet (16 kHz setting): students distilled with l2 at time s
("w/o d_teacher") and with d_teacher, at 1, 8 and 16 steps (ω = 3.5, ν = 1 at 1 step; ω = 3, ν = 1.5 at 8;
ω = 3, ν = 2 at 16). The paper's 1-step SoundCTM row reads ω = 3.0, a value it marks nowhere else; both
1-step rows here use ω = 3.5, the setting of Table 1, whose rows they share.

    python reproduce/table13.py                 # tiny tier (CPU): builds what it needs, cached
"""

from __future__ import annotations

from soundctm.experiments.catalog import UNET_STUDENT, reference_rows, student_row, variant
from soundctm.experiments.spec import Claim, Table

COLS = ("FAD_vgg", "KL_passt", "IS_passt", "CLAP")
P = lambda *v: dict(zip(COLS, v))  # the paper's numbers of a row
STEPS = ((1, 3.5, 1.0), (8, 3.0, 1.5), (16, 3.0, 2.0))  # (steps, ω, ν)
RUNS = {"l2_s": ("w/o d_teacher (l2 at s)", variant(UNET_STUDENT, distance="l2_s"),
                 (P(2.45, 1.28, 6.83, 0.42), P(1.64, 1.23, 7.56, 0.44), P(1.62, 1.23, 7.16, 0.44))),
        "d_teacher": ("SoundCTM (d_teacher)", UNET_STUDENT,
                      (P(2.17, 1.27, 6.83, 0.42), P(1.51, 1.21, 8.08, 0.46), P(1.37, 1.23, 8.31, 0.46)))}

TABLE = Table(
    name="table13",
    title="Table 13: d_teacher ablation (UNet, 16 kHz setting)",
    description=__doc__.split("\n\n")[0],
    paper_columns=COLS,
    rows=(
        *(student_row(n, w, nu, name=f"{d}-{n}", run=run, label=label, paper=paper[i])
          for d, (label, run, paper) in RUNS.items() for i, (n, w, nu) in enumerate(STEPS)),
        *reference_rows("vae-recon", "zeros"),
    ),
    claims=tuple(
        Claim(f"({n}-fd)", f"at {n} step(s) d_teacher beats l2 at s-time (fd)", "improves", "fd", f"l2_s-{n}",
              f"d_teacher-{n}", subject=f"d_teacher-{n}") for n, _, _ in STEPS),
)
