"""Table 1: the CTM distance at 1 step (16 kHz setting, UNet). The teacher (Heun, 40 steps) against three
1-step students that differ only in the distance of the CTM loss: l2 after carrying both jumps to time 0
(CTM's choice), l2 at time s, and d_teacher at time s (the teacher's blocks, Eq. 5). ω = 3.5, ν = 1.

    python reproduce/table1.py                  # tiny tier (CPU): builds what it needs, cached
"""

from __future__ import annotations

from soundctm.experiments.catalog import UNET_STUDENT, UNET_TEACHER, reference_rows, student_row, teacher_row, variant
from soundctm.experiments.spec import Claim, Table

COLS = ("FAD_vgg", "KL_passt", "IS_passt", "CLAP")
P = lambda *v: dict(zip(COLS, v))  # the paper's numbers of a row
RUNS = {"l2_0": variant(UNET_STUDENT, distance="l2_0"), "l2_s": variant(UNET_STUDENT, distance="l2_s"),
        "d_teacher": UNET_STUDENT}
LABELS = {"l2_0": "l2 (0-time)", "l2_s": "l2 (s-time)", "d_teacher": "d_teacher (s-time)"}
PAPER = {"l2_0": P(2.43, 1.28, 6.87, 0.42), "l2_s": P(2.45, 1.28, 6.83, 0.42), "d_teacher": P(2.17, 1.27, 7.18, 0.43)}

TABLE = Table(
    name="table1",
    title="Table 1: d_teacher against l2 in the CTM loss, 1 step (UNet, 16 kHz setting)",
    description=__doc__.split("\n\n")[0],
    paper_columns=COLS,
    rows=(
        teacher_row(run=UNET_TEACHER, omega=3.5, label="Teacher w/ Heun solver", paper=P(1.71, 1.28, 8.11, 0.46)),
        *(student_row(1, 3.5, 1.0, name=f"{d}-1", run=run, label=LABELS[d], paper=PAPER[d]) for d, run in RUNS.items()),
        *reference_rows("vae-recon", "zeros"),
    ),
    claims=tuple(
        Claim(f"({d}-{m})", f"at 1 step d_teacher beats {LABELS[d]} ({m})", "improves", m, f"{d}-1", "d_teacher-1",
              subject="d_teacher-1")
        for d in ("l2_0", "l2_s") for m in ("fd", "kl", "clap")),
)
