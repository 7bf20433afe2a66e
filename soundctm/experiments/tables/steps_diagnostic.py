"""Diagnostic for Table 3's claim (b), "quality improves from 1 to 16 steps": is it the student or the
task? The teacher's own Heun curve over the same step counts, the student at nu = 1 for every step count
(Table 3 switches to nu = 5 at 8 steps), and a student distilled three times longer.

    python reproduce/steps_diagnostic.py      # writes results/tiny/steps_diagnostic.{csv,md,json}
"""

from __future__ import annotations

from soundctm.experiments.catalog import STUDENT, reference_rows, student_row, teacher_row
from soundctm.experiments.spec import Claim, Run, Table

LONG = Run("student", "dit", options={**dict(STUDENT.options), "steps": 900}, seeds=(0,), teacher=STUDENT.teacher)
HEUN = ((2, 1), (3, 2), (5, 4), (9, 8), (17, 16), (40, 39))  # grid points N -> Heun steps N - 1

TABLE = Table(
    name="steps_diagnostic",
    title="Diagnostic: quality against steps for the teacher and the students",
    description=__doc__.split("\n\n")[0],
    rows=(
        *(teacher_row(f"teacher-heun-{k}", steps=n, label=f"teacher, Heun {k} steps") for n, k in HEUN),
        *(student_row(n, nu=1.0, name=f"student-nu1-{n}", label="SoundCTM-DiT, ν = 1") for n in (1, 2, 4, 8, 16)),
        *(student_row(n, nu=1.0, run=LONG, name=f"student-long-{n}", label="SoundCTM-DiT, 3x distillation, ν = 1")
          for n in (1, 16)),
        *reference_rows("vae-recon", "zeros"),
    ),
    claims=tuple(
        Claim(f"({who}-{m})", f"{who}: quality improves from {a} to {b} ({m})", "improves", m, a, b, subject=b)
        for m in ("fd", "kl", "clap")
        for who, a, b in (("teacher", "teacher-heun-1", "teacher-heun-16"), ("student ν=1", "student-nu1-1",
                                                                                  "student-nu1-16"),
                          ("long student", "student-long-1", "student-long-16"))),
)
