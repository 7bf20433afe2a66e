"""Table 3: full-band text-to-sound. The teacher (Heun, 40 steps) against SoundCTM-DiT with 1-16
deterministic steps (ω = 5; ν = 1 for 1-4 steps, ν = 5 for 8-16), inference time, and the
instrument's reference rows every quality claim is anchored to.

    python reproduce/table3.py                  # tiny tier (CPU): builds what it needs, cached
    python reproduce/table3.py --tier paper     # AudioCaps + pretrained embedders (bring the files)
"""

from __future__ import annotations

from soundctm.experiments.catalog import reference_rows, student_row, teacher_row
from soundctm.experiments.spec import Claim, Row, Table

COLS = ("FD_openl3", "KL_passt", "CLAP", "seconds_H100")
P = lambda *v: dict(zip(COLS, v))  # the paper's numbers of a row

TABLE = Table(
    name="table3",
    title="Table 3: full-band objective comparison",
    description=__doc__.split("\n\n")[0],
    paper_columns=COLS,
    rows=(
        Row("stable-audio-open", label="Stable Audio Open", steps=100, omega=7.0, paper=P(78.24, 2.14, 0.29, None),
            not_run="the Stable Audio Open 1.0 checkpoint and its T5 text encoder"),
        Row("audioldm2-48k", label="AudioLDM2-48kHz", steps=200, omega=3.5, paper=P(101.11, 2.04, 0.37, None),
            not_run="the AudioLDM2-48kHz checkpoint, its VAE/vocoder and its text encoders"),
        teacher_row(label="Teacher w/ Heun solver", timed=True, paper=P(72.34, 1.74, 0.36, 2.50)),
        *(student_row(n, 5.0, nu, label="SoundCTM-DiT", timed=True, paper=P(*v)) for n, nu, v in (
            (1, 1.0, (84.07, 1.74, 0.36, 0.06)), (2, 1.0, (79.96, 1.61, 0.38, 0.10)),
            (4, 1.0, (83.14, 1.57, 0.37, 0.18)), (8, 5.0, (79.05, 1.29, 0.40, 0.35)),
            (16, 5.0, (72.24, 1.27, 0.42, 0.71)))),
        *reference_rows("vae-recon", "zeros"),
    ),
    claims=(
        Claim("(a)", "the 1-step student is at least 10x faster than the 40-step teacher",
              "faster", None, "student-1", "teacher", margin=10.0),
        *(Claim(f"(b-{m})", f"quality improves from 1 to 16 steps ({m})", "improves", m, "student-1",
                "student-16", subject="student-16") for m in ("fd", "kid", "kl", "clap")),
        *(Claim(f"(c-{m})", f"at 16 steps the student is close to the teacher ({m}, within 0.1 on q)",
                "close", m, "student-16", "teacher", margin=0.1, subject="student-16") for m in ("fd", "kl", "clap")),
    ),
)
