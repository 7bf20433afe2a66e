"""ν and ω (Figs. 5, 12, 13): FD and CLAP of SoundCTM-DiT over a ν x ω grid. Fig. 5: the student distilled
with ω ~ U[2, 5] (the catalog's STUDENT) at 8 steps; Fig. 12: a student distilled with ω ~ U[1, 7] (the same
recipe and seeds, `omega_range` (1, 7)) at 1 and 16 steps. γ = 0 throughout. The grids are smaller than
the paper's (which it does not list) so that the tiny tier runs them in minutes: ν ∈ {1, 3, 5} x ω ∈ {2, 3.5, 5}
(Fig. 5) and ν ∈ {1, 3, 5} x ω ∈ {1, 4, 7} (Fig. 12); each row scores every test clip's captions with one
sample per caption (half the tier's items; --samples-per-caption or --units override it).
Figures: results/<tier>/nu_omega_fig5.png, nu_omega_fig12.png (values and intervals also in the .csv
beside them) and nu_omega_fig13.png (ν = 1 vs ν = 5 at ω = 5, 16 steps, the same z_T and caption).

    python reproduce/nu_omega.py                # tiny tier (CPU): builds what it needs, cached

Claim C5: at 8 steps (Fig. 5) and at 16 steps (Fig. 12) raising ν from 1 to 5 improves FD and CLAP at every ω
(the paired improvement's 95 % interval above 0). Fig. 12's 1-step claim: at every ν, ω = 1 gives a worse CLAP
than ω = 4. Each quality claim is re-decided with the decoded-zeros row in place of its better row.
"""

from __future__ import annotations

from soundctm.experiments.catalog import STUDENT, reference_rows, student_row, variant
from soundctm.experiments.figures import heatmap_figure, spectrogram_figure
from soundctm.experiments.spec import Claim, Items, Table

NUS = (1.0, 3.0, 5.0)
OMEGAS_5 = (2.0, 3.5, 5.0)  # Fig. 5: inside the training range U[2, 5]
OMEGAS_12 = (1.0, 4.0, 7.0)  # Fig. 12: the ends and the middle of U[1, 7]
WIDE = variant(STUDENT, omega_range=(1.0, 7.0))  # Fig. 12's student


def grid_row(fig: int, steps: int, nu: float, omega: float):
    run = STUDENT if fig == 5 else WIDE
    label = "SoundCTM-DiT, ω ~ U[2, 5]" if fig == 5 else "SoundCTM-DiT, ω ~ U[1, 7]"
    return student_row(steps, omega, nu, run=run, name=f"f{fig}-s{steps}-n{nu:g}-w{omega:g}", label=label)


GRIDS = {("Fig. 5, 8 steps", 5, 8): OMEGAS_5, ("Fig. 12, 1 step", 12, 1): OMEGAS_12,
         ("Fig. 12, 16 steps", 12, 16): OMEGAS_12}
CELLS = {key: {(nu, w): grid_row(key[1], key[2], nu, w) for nu in NUS for w in omegas} for key, omegas in GRIDS.items()}
FIG13 = [student_row(16, 5.0, nu, name=f"f13-n{nu:g}") for nu in (1.0, 5.0)]


def _name(key, nu, w):
    return CELLS[key][nu, w].name


TABLE = Table(
    name="nu_omega",
    title="Figs. 5 and 12: FD and CLAP over ν x ω (SoundCTM-DiT, γ = 0)",
    description=__doc__.split("\n\n")[0],
    metrics=("fd", "clap"),
    rows=(*(r for cells in CELLS.values() for r in cells.values()), *reference_rows("vae-recon", "zeros")),
    claims=(
        *(Claim(f"(C5-f{fig}-{steps}-w{w:g}-{m})", f"at {steps} steps raising ν from 1 to 5 improves {m} at ω = {w:g} "
                f"(Fig. {fig})", "improves", m, _name(key, 1.0, w), _name(key, 5.0, w), subject=_name(key, 5.0, w))
          for key, omegas in GRIDS.items() for (_, fig, steps) in [key] if steps > 1 for w in omegas
          for m in ("fd", "clap")),
        *(Claim(f"(C5-f12-1-n{nu:g}-omega)", f"at 1 step a student distilled with ω ~ U[1, 7] gives a worse CLAP at "
                f"ω = 1 than at ω = 4 (ν = {nu:g})", "improves", "clap", _name(("Fig. 12, 1 step", 12, 1), nu, 1.0),
                _name(("Fig. 12, 1 step", 12, 1), nu, 4.0), subject=_name(("Fig. 12, 1 step", 12, 1), nu, 4.0))
          for nu in NUS),
    ),
    items=Items(samples_per_caption=1),
    figures=(
        heatmap_figure([("Fig. 5, 8 steps", {k: r.name for k, r in CELLS["Fig. 5, 8 steps", 5, 8].items()})],
                       ("fd", "clap"), suffix="fig5",
                       title="Fig. 5: ν x ω at 8 steps (student distilled with ω ~ U[2, 5]); darker is better"),
        heatmap_figure([(key[0], {k: r.name for k, r in CELLS[key].items()}) for key in GRIDS if key[1] == 12],
                       ("fd", "clap"), suffix="fig12",
                       title="Fig. 12: ν x ω at 1 and 16 steps (distilled with ω ~ U[1, 7]); darker is better"),
        spectrogram_figure([("ω = 5, 16 steps", FIG13)], ["ν = 1", "ν = 5"], suffix="fig13",
                           title="Fig. 13: ν = 1 vs ν = 5 (ω = 5, 16 steps), the same z_T and caption"),
    ),
)
