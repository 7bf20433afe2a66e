"""Table 9: 16 kHz listening test (MUSHRA, OVAL and REL, the protocol of Table 4). Exports a webMUSHRA
kit: 10 random test clips, each trial with the hidden reference, the 3.5 kHz anchor and SoundCTM-UNet
at 1 and 4 steps (ω = 3.5, ν = 1), loudness-normalised; AudioLCM is listed, not run.

    python reproduce/table9.py                            # export the kit (tiny tier; models cached)
    python reproduce/table9.py --analyze mushra.csv       # post-screen, mean ± 95 % CI, claims
"""

from __future__ import annotations

from soundctm.experiments.catalog import STUDENT_SEEDS, student_row
from soundctm.experiments.listening import KitClaim, ListeningTest
from soundctm.experiments.spec import Row, Run

# the 16 kHz setting's SoundCTM-UNet (the same run, by value, as the UNet ablations' d_teacher student)
UNET_STUDENT = Run("student", "unet", options={"distance": "d_teacher"}, seeds=STUDENT_SEEDS,
                   teacher=Run("teacher", "unet"))

P = lambda oval, rel: {"OVAL": oval, "REL": rel}  # the paper's mean ratings of a row
AUDIOLCM = "the AudioLCM checkpoint (a consistency model distilled from its own teacher)"

TABLE = ListeningTest(
    name="table9",
    title="Table 9: 16 kHz listening test (MUSHRA)",
    description=__doc__.split("\n\n")[0],
    paper_raters=15,
    reference_paper=P(75.5, 74.9),
    rows=(
        Row("audiolcm-1", label="AudioLCM, 1 step", steps=1, omega=5.0, paper=P(49.6, 56.9), not_run=AUDIOLCM),
        Row("audiolcm-4", label="AudioLCM, 4 steps", steps=4, omega=5.0, paper=P(57.2, 64.1), not_run=AUDIOLCM),
        student_row(1, 3.5, 1.0, run=UNET_STUDENT, name="unet-student-1", label="SoundCTM-UNet, 1 step",
                    paper=P(64.0, 69.4)),
        student_row(4, 3.5, 1.0, run=UNET_STUDENT, name="unet-student-4", label="SoundCTM-UNet, 4 steps",
                    paper=P(67.0, 71.3)),
    ),
    claims=tuple(KitClaim(f"({n}-{c})", f"SoundCTM beats AudioLCM at {n} step(s) on {c}, CIs apart", "separated", c,
                          f"unet-student-{n}", f"audiolcm-{n}", subject=f"unet-student-{n}")
                 for n in (1, 4) for c in ("OVAL", "REL")),
)
