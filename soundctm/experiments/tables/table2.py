"""Table 2: the 16 kHz setting (UNet). The teacher (Heun, 40 steps), SoundCTM-UNet at 1-16 deterministic steps
(the paper's ω, ν per row) and the two consistency-distillation peers distilled from the same teacher by the
same loop (ConsistencyTTA-style CD and AudioLCM-style LCD, `soundctm/cd.py`) at 1-16 steps of the consistency
models' stochastic multistep sampler. The LDM baselines are listed with the paper's numbers, not run.
Labels mark with † the paper's numbers its authors measured from public checkpoints (the rest are quoted).

    python reproduce/table2.py                  # tiny tier (CPU): builds what it needs, cached
"""

from __future__ import annotations

from soundctm.experiments.catalog import (
    AUDIO_LCM,
    CONSISTENCY_TTA,
    UNET_STUDENT,
    UNET_TEACHER,
    reference_rows,
    student_row,
    teacher_row,
)
from soundctm.experiments.spec import Claim, Row, Table

COLS = ("FAD_vgg", "KL_passt", "IS_passt", "CLAP")
P = lambda *v: dict(zip(COLS, v))  # the paper's numbers of a row
CKPT = "its checkpoint (the paper quotes or measures the released model)"
SOUNDCTM = ((1, 3.5, 1.0, P(2.08, 1.26, 7.13, 0.43)), (2, 3.5, 1.0, P(1.90, 1.24, 7.26, 0.45)),
            (4, 3.5, 1.0, P(1.72, 1.22, 7.37, 0.45)), (8, 3.0, 1.5, P(1.45, 1.20, 7.98, 0.46)),
            (16, 3.0, 2.0, P(1.38, 1.19, 8.24, 0.46)))
PEERS = {  # name: (run, label, omega, {steps: (paper numbers, which of them are †)})
    "consistencytta": (CONSISTENCY_TTA, "ConsistencyTTA (CD, ours)", 4.0, {
        1: (P(2.41, 1.31, 7.84, 0.42), "† KL, IS, CLAP"), 2: (P(2.48, 1.27, 7.88, 0.41), "†"),
        4: (P(3.01, 1.31, 8.05, 0.42), "†"), 16: (P(3.01, 1.31, 8.05, 0.42), "†")}),
    "audiolcm": (AUDIO_LCM, "AudioLCM (LCD, ours)", 5.0, {
        1: (P(4.04, 1.75, 6.52, 0.33), "†"), 2: (P(1.67, 1.49, 8.24, 0.41), "† KL, IS, CLAP"),
        4: (P(1.42, 1.40, 8.78, 0.42), "† FAD, IS, CLAP"), 16: (P(1.42, 1.40, 8.78, 0.42), "† FAD, IS, CLAP")}),
}
M = ("fd", "kl", "clap")  # the paper's C2 metrics (SoundCTM does not win on IS)

TABLE = Table(
    name="table2",
    title="Table 2: 16 kHz comparison with the consistency-distillation peers (UNet)",
    description=__doc__.split("\n\n")[0],
    paper_columns=COLS,
    rows=(
        Row("audioldm2-ac-large", label="AudioLDM2-AC-Large, DDIM", steps=200, omega=3.5,
            paper=P(1.42, 0.98, None, None), not_run=CKPT),
        Row("tango", label="TANGO, DDIM († KL, IS, CLAP)", steps=200, omega=3.0, paper=P(1.64, 1.31, 6.35, 0.44),
            not_run=CKPT),
        Row("consistencytta-teacher", label="Teacher of ConsistencyTTA, DDIM", steps=200, omega=3.0,
            paper=P(1.91, None, None, None), not_run=CKPT),
        Row("audiolcm-teacher", label="Teacher of AudioLCM, DDIM", steps=100, omega=5.0,
            paper=P(1.56, None, None, None), not_run=CKPT),
        teacher_row(run=UNET_TEACHER, omega=3.5, label="Our teacher (TANGO-EDM), Heun",
                    paper=P(1.71, 1.28, 8.11, 0.46)),
        *(Row(f"{peer}-{n}", run=run, sampler="cm", steps=n, omega=w, label=f"{label} [paper {dag}]", paper=paper)
          for peer, (run, label, w, rows) in PEERS.items() for n, (paper, dag) in rows.items()),
        *(student_row(n, w, nu, name=f"soundctm-{n}", run=UNET_STUDENT, label="SoundCTM-UNet", paper=paper)
          for n, w, nu, paper in SOUNDCTM),
        *reference_rows("vae-recon", "zeros"),
    ),
    claims=(
        *(Claim(f"(C2-{peer}-{m})", f"at 1 step SoundCTM beats {PEERS[peer][1]} ({m})", "improves", m, f"{peer}-1",
                "soundctm-1", subject="soundctm-1") for peer in PEERS for m in M),
        *(Claim(f"(steps-{m})", f"SoundCTM improves from 1 to 16 steps ({m})", "improves", m, "soundctm-1",
                "soundctm-16", subject="soundctm-16") for m in ("fd", "kid", "kl", "clap")),
        *(Claim(f"(16-{peer}-{m})", f"at 16 steps SoundCTM beats {PEERS[peer][1]} ({m})", "improves", m,
                f"{peer}-16", "soundctm-16", subject="soundctm-16") for peer in PEERS for m in M),
    ),
)
