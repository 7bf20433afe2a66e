"""The instrument's sanity ladder: systems whose order we know, scored with every metric.

real-other (a second real take of each caption: each metric's noise floor at this sample size)
< vae-recon << teacher << teacher-euler-1 (one Euler step from sigma_max: the blurry posterior
mean) <= zeros / noise; shuffled-captions (real clips against another clip's captions) must score
far worse than real-other on the text-aware metrics. `<<`: the 95 % intervals do not overlap. Beside the
ladder, a paired diagnostic: the interval of teacher-euler-1 minus teacher over the same bootstrap draws of clips;
and the distillation check: the 1-step student against the teacher's Euler-1, paired, on every metric and on the
teacher-ODE error (the "fidelity" column: each sampler row's latents against the teacher's Heun-40 from the same
z_T, caption and ω; decoded zeros score 1).

    python reproduce/instrument.py          # writes results/tiny/instrument.{csv,md,json}
"""

from __future__ import annotations

from soundctm.experiments.catalog import TEACHER, reference_rows, student_row, teacher_row
from soundctm.experiments.spec import Claim, Row, Table

LADDER = [("real-other", "<", "vae-recon"), ("vae-recon", "<<", "teacher"), ("teacher", "<<", "teacher-euler-1"),
          ("teacher-euler-1", "≤", "zeros"), ("teacher-euler-1", "≤", "noise")]
KIND = {"<": "ordered", "≤": "ordered", "<<": "separated"}

TABLE = Table(
    name="instrument",
    title="The instrument: a sanity ladder of systems of known order",
    description=__doc__.split("\n\n")[0],
    rows=(
        *reference_rows("real-other", "vae-recon"),
        teacher_row(),
        student_row(1), student_row(16, nu=5.0),
        Row("teacher-euler-1", run=TEACHER, sampler="euler", steps=1, omega=5.0,
            label="teacher, one Euler step from σ_max (posterior mean)"),
        *reference_rows("zeros", "noise", "shuffled-captions"),
    ),
    claims=(
        *(Claim(f"{a} {mark} {b} ({m})", "", KIND[mark], m, a, b) for m in ("fd", "kid", "kl", "clap")
          for a, mark, b in LADDER),
        *(Claim(f"real-other << shuffled-captions ({m})", "", "separated", m, "real-other", "shuffled-captions")
          for m in ("kl", "clap")),
        # a diagnostic beside the ladder, not part of it: teacher against its posterior mean on the same clips
        # (the paired bootstrap interval of the difference), which the marginal intervals of `<<` ignore
        *(Claim(f"paired: teacher better than teacher-euler-1 ({m})", "", "improves", m, "teacher-euler-1",
                "teacher") for m in ("fd", "kid", "kl", "clap")),
        # distillation: the 1-step student against the teacher's own one step (paired over the same clips), on
        # the metrics and on the teacher-ODE error; the decoded-zeros self-test substitutes zeros for the student
        *(Claim(f"paired: student-1 better than teacher-euler-1 ({m})", "", "improves", m, "teacher-euler-1",
                "student-1", subject="student-1") for m in ("fd", "kid", "kl", "clap", "fidelity")),
    ),
)
