"""Table 4: full-band listening test (MUSHRA, OVAL and REL). Exports a webMUSHRA kit: 10 random test
clips, each trial with the hidden reference, the 3.5 kHz anchor, the teacher (Heun, 40 steps) and
SoundCTM-DiT at 1 step (ν = 1) and 16 steps (ν = 5), all at ω = 5, loudness-normalised; then
analyses webMUSHRA's ratings.

    python reproduce/table4.py                            # export the kit (tiny tier; models cached)
    python reproduce/table4.py --analyze mushra.csv       # post-screen, mean ± 95 % CI, claims
"""

from __future__ import annotations

from soundctm.experiments.catalog import student_row, teacher_row
from soundctm.experiments.listening import KitClaim, ListeningTest
from soundctm.experiments.spec import Row

P = lambda oval, rel: {"OVAL": oval, "REL": rel}  # the paper's mean ratings of a row
BASELINES = ("stable-audio-open", "audioldm2-48k", "teacher")

TABLE = ListeningTest(
    name="table4",
    title="Table 4: full-band listening test (MUSHRA)",
    description=__doc__.split("\n\n")[0],
    paper_raters=17,
    reference_paper=P(79.6, 83.2),
    rows=(
        Row("stable-audio-open", label="Stable Audio Open, DPM-Solver++", steps=100, omega=7.0, paper=P(54.0, 47.1),
            not_run="the Stable Audio Open 1.0 checkpoint and its T5 text encoder"),
        Row("audioldm2-48k", label="AudioLDM2-48kHz, DDIM", steps=200, omega=3.5, paper=P(65.1, 69.9),
            not_run="the AudioLDM2-48kHz checkpoint, its VAE/vocoder and its text encoders"),
        teacher_row(label="Our teacher, Heun", paper=P(66.9, 69.4)),
        student_row(1, 5.0, 1.0, label="SoundCTM-DiT, 1 step", paper=P(63.2, 69.1)),
        student_row(16, 5.0, 5.0, label="SoundCTM-DiT, 16 steps", paper=P(72.0, 77.0)),
    ),
    claims=(
        *(KitClaim(f"(a-{c})", f"16 steps beat 1 step on {c}, CIs apart", "separated", c, "student-16", "student-1",
                   subject="student-16") for c in ("OVAL", "REL")),
        *(KitClaim(f"(b-{b}-{c})", f"16 steps beat {b} on {c}, CIs apart", "separated", c, "student-16", b,
                   subject="student-16") for b in BASELINES for c in ("OVAL", "REL")),
        *(KitClaim(f"(c-{c})", f"1 step is comparable to the teacher on {c} (CIs overlap)", "overlap", c,
                   "student-1", "teacher", subject="student-1") for c in ("OVAL", "REL")),
    ),
)
