"""Table 11: the DSM term (DiT). Students distilled without the DSM term (λ_DSM = 0, Eq. 9) and with it,
at 1 step (ω = 5, ν = 1) and 8 and 16 steps (ω = 5, ν = 5). The full student is Table 3's.

    python reproduce/table11.py                 # tiny tier (CPU): builds what it needs, cached
"""

from __future__ import annotations

from soundctm.experiments.catalog import STUDENT, reference_rows, student_row, variant
from soundctm.experiments.spec import Claim, Table

COLS = ("FD_openl3", "KL_passt", "CLAP")
P = lambda *v: dict(zip(COLS, v))  # the paper's numbers of a row
STEPS = ((1, 1.0), (8, 5.0), (16, 5.0))  # (steps, ν); ω = 5
M = ("fd", "kl", "clap")
RUNS = {"no-dsm": ("w/o DSM", variant(STUDENT, dsm_weight=0.0), (P(77.9, 1.74, 0.35), P(93.6, 2.28, 0.28),
                                                                  P(108.7, 2.60, 0.23))),
        "full": ("full (CTM + DSM)", STUDENT, (P(77.4, 1.70, 0.35), P(68.1, 1.29, 0.40), P(65.6, 1.22, 0.42)))}

TABLE = Table(
    name="table11",
    title="Table 11: DSM-loss ablation (DiT)",
    description=__doc__.split("\n\n")[0],
    paper_columns=COLS,
    rows=(
        *(student_row(n, 5.0, nu, name=f"{v}-{n}", run=run, label=label, paper=paper[i])
          for v, (label, run, paper) in RUNS.items() for i, (n, nu) in enumerate(STEPS)),
        *reference_rows("vae-recon", "zeros"),
    ),
    claims=(
        *(Claim(f"(1-{m})", f"at 1 step the two are comparable: within 0.1 of each other on q ({m})", "comparable",
                m, "full-1", "no-dsm-1", margin=0.1, subject="full-1") for m in M),
        *(Claim(f"({n}-{m})", f"at {n} steps the DSM term improves quality ({m})", "improves", m, f"no-dsm-{n}",
                f"full-{n}", subject=f"full-{n}") for n in (8, 16) for m in M),
    ),
)
