"""Table 7: semantic preservation across step counts. CLAP-LPAPS (and the mel distance) between each item's
1-step and 16-step samples of SoundCTM-DiT for γ ∈ {0, 0.2, 0.5, 1.0}, with the same z_T and caption;
ω = 5 and ν as Table 3's rows (ν = 1 at 1 step, ν = 5 at 16 steps; the paper leaves ω and ν of Table 7
open; one more γ = 0 row keeps ν = 1 at 16 steps, to separate the step count from ν); the γ noise of item i
is the same standard-normal draw for every γ (seeded from item i). The paper's two reference rows: VAE
reconstruction vs its ground truth (the floor) and ground truth vs the 1-step samples (the random level; on
the tiny tier the ground truth of item i is a real take of its test clip).
Mean ± 95 % bootstrap half-width over test clips, (sd: the standard deviation over items, the paper's ±).
Figures 4 / 7: results/<tier>/table7_spectrograms.png (1 / 4 / 16 steps × γ = 0 and 0.5).

    python reproduce/table7.py                  # tiny tier (CPU): builds what it needs, cached
    python reproduce/table7.py --tier paper     # AudioCaps + LAION-CLAP (bring the files)

Claim C4: with γ = 0 the 1- and 16-step samples are far closer than with any γ > 0: their 95 % intervals
do not overlap (≪) and the paired difference's interval lies above 0. Each is re-decided with decoded
all-zero latents against the γ = 0 16-step samples in place of the γ = 0 pair (a pair that shares no
content), which must fail.
"""

from __future__ import annotations

from soundctm.experiments.catalog import student_row
from soundctm.experiments.figures import spectrogram_figure
from soundctm.experiments.pairs import pair_row, trivial_pair
from soundctm.experiments.spec import Claim, Row, Table

GAMMAS = (0.0, 0.2, 0.5, 1.0)
PAPER = {0.0: (3.34, 0.74), 0.2: (5.21, 0.57), 0.5: (5.21, 0.56), 1.0: (5.34, 0.65)}  # CLAP-LPAPS mean, std
COLS = ("CLAP-LPAPS", "CLAP-LPAPS sd")
P = lambda *v: dict(zip(COLS, v))  # the paper's numbers of a row
NU = {1: 1.0, 4: 1.0, 16: 5.0}  # Table 3's ν per step count (ω = 5)


def sampled(steps: int, gamma: float) -> Row:
    """SoundCTM-DiT (the catalog's STUDENT) at `steps` with γ; 1 and 16 steps are Table 3's rows at γ = 0."""
    return student_row(steps, 5.0, NU[steps], gamma=gamma, name=f"student-{steps}-g{gamma:g}")


GT, RECON = Row("real-other", source="real-other"), Row("vae-recon", source="vae-recon")
LABEL = {0.0: "Deterministic sampling (γ = 0)", 0.2: "Stochastic sampling (γ = 0.2)",
         0.5: "Stochastic sampling (γ = 0.5)", 1.0: "Stochastic sampling (γ = 1.0, CM sampling)"}
PAIRS = {g: pair_row(f"gamma-{g:g}", sampled(1, g), sampled(16, g), label=LABEL[g], paper=P(*PAPER[g]))
         for g in GAMMAS}

TABLE = Table(
    name="table7",
    title="Table 7: semantic preservation between 1- and 16-step samples (CLAP-LPAPS)",
    description=__doc__.split("\n\n")[0],
    metrics=("lpaps", "mel"),
    paper_columns=COLS,
    rows=(
        pair_row("vae-recon-vs-gt", RECON, GT, label="VAE reconstruction vs ground truth (lower bound)",
                 paper=P(2.55, 0.39)),
        *PAIRS.values(),
        pair_row("gamma-0-nu1", sampled(1, 0.0), student_row(16, 5.0, 1.0, name="student-16-g0-nu1"),
                 label="Deterministic sampling (γ = 0), ν = 1 at 16 steps too (the step count alone)"),
        pair_row("gt-vs-1step", GT, sampled(1, 0.0), label="ground truth vs 1-step samples (random level)",
                 paper=P(6.07, 0.41)),
        trivial_pair(PAIRS[0.0], "zeros-vs-16"),
    ),
    claims=(
        *(Claim(f"(C4-γ{g:g})", f"γ = 0 keeps the 1- and 16-step samples far closer than γ = {g:g} (intervals apart)",
                "separated", "lpaps", "gamma-0", f"gamma-{g:g}", subject="gamma-0", trivial="zeros-vs-16")
          for g in GAMMAS[1:]),
        *(Claim(f"(C4-γ{g:g}-paired)", f"γ = 0 keeps the 1- and 16-step samples closer than γ = {g:g} (paired)",
                "improves", "lpaps", f"gamma-{g:g}", "gamma-0", subject="gamma-0", trivial="zeros-vs-16")
          for g in GAMMAS[1:]),
        Claim("(C4-random)", "γ = 0's 1- and 16-step samples are far closer than ground truth to 1-step samples",
              "separated", "lpaps", "gamma-0", "gt-vs-1step", subject="gamma-0", trivial="zeros-vs-16"),
    ),
    figures=(spectrogram_figure(
        [(f"γ = {g:g}", [sampled(n, g) for n in (1, 4, 16)]) for g in (0.0, 0.5)], ["1 step", "4 steps", "16 steps"],
        title="SoundCTM-DiT, same z_T and caption in each line: 1, 4 and 16 steps at γ = 0 and 0.5 (Figs. 4, 7)"),),
)
