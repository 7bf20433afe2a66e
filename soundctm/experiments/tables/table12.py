"""Table 12: the d_teacher ablation (DiT). Students distilled with l2 at time s ("w/o d_teacher"; the
paper does not say which l2, Table 13 suggests time s) and with d_teacher, at 1 step (ω = 5, ν = 1) and 8
and 16 steps (ω = 5, ν = 5). The full student is Table 3's.

    python reproduce/table12.py                 # tiny tier (CPU): builds what it needs, cached
"""

from __future__ import annotations

from soundctm.experiments.catalog import STUDENT, reference_rows, student_row, variant
from soundctm.experiments.spec import Claim, Table

COLS = ("FD_openl3", "KL_passt", "CLAP")
P = lambda *v: dict(zip(COLS, v))  # the paper's numbers of a row
STEPS = ((1, 1.0), (8, 5.0), (16, 5.0))  # (steps, ν); ω = 5
M = ("fd", "kl", "clap")
RUNS = {"l2_s": ("w/o d_teacher (l2 at s)", variant(STUDENT, distance="l2_s"),
                 (P(77.8, 1.67, 0.36), P(79.6, 1.58, 0.35), P(69.2, 1.28, 0.41))),
        "full": ("full (d_teacher)", STUDENT, (P(77.4, 1.70, 0.35), P(68.1, 1.29, 0.40), P(65.6, 1.22, 0.42)))}

TABLE = Table(
    name="table12",
    title="Table 12: d_teacher ablation (DiT)",
    description=__doc__.split("\n\n")[0],
    paper_columns=COLS,
    rows=(
        *(student_row(n, 5.0, nu, name=f"{v}-{n}", run=run, label=label, paper=paper[i])
          for v, (label, run, paper) in RUNS.items() for i, (n, nu) in enumerate(STEPS)),
        *reference_rows("vae-recon", "zeros"),
    ),
    claims=(
        *(Claim(f"(1-{m})", f"at 1 step the two are comparable: within 0.1 of each other on q ({m})", "comparable",
                m, "full-1", "l2_s-1", margin=0.1, subject="full-1") for m in M),
        *(Claim(f"({n}-{m})", f"at {n} steps d_teacher improves quality ({m})", "improves", m, f"l2_s-{n}",
                f"full-{n}", subject=f"full-{n}") for n in (8, 16) for m in M),
    ),
)
