"""The ν x ω declaration (reproduce/nu_omega.py) and the heatmap figure (experiments.figures): the grid's
settings, runs and claims; the figure's CSV against the result's values and intervals, and its PNG."""

import csv
from types import SimpleNamespace

import numpy as np
import pytest
from scripts import load_script

from soundctm.experiments.catalog import STUDENT
from soundctm.experiments.figures import heatmap_figure
from soundctm.experiments.spec import Table
from soundctm.experiments.stats import Dist


def test_nu_omega_declaration():
    mod = load_script("nu_omega")
    t = mod.TABLE
    assert load_script("all").load_table("nu_omega") == t
    assert t.extra["items"] == {"samples_per_caption": 1} and t.metrics == ("fd", "clap")
    rows = {r.name: r for r in t.rows}
    for (_, fig, steps), omegas in mod.GRIDS.items():
        for nu in (1.0, 3.0, 5.0):
            for w in omegas:
                r = rows[f"f{fig}-s{steps}-n{nu:g}-w{w:g}"]
                assert (r.steps, r.nu, r.omega, r.gamma, r.sampler) == (steps, nu, w, 0.0, "ctm")
                assert r.run == (STUDENT if fig == 5 else mod.WIDE)
    wide = mod.WIDE
    assert dict(wide.options) == {**dict(STUDENT.options), "omega_range": (1.0, 7.0)}
    assert wide.seeds == STUDENT.seeds and wide.teacher == STUDENT.teacher
    # C5: nu 1 -> 5 at every omega, FD and CLAP, at 8 (Fig. 5) and 16 steps (Fig. 12); 1 step: omega 1 -> 4
    c5 = [c for c in t.claims if c.kind == "improves" and "omega" not in c.id]
    assert len(c5) == 2 * 3 * 2 and {c.metric for c in c5} == {"fd", "clap"}
    assert all(rows[c.a].nu == 1.0 and rows[c.b].nu == 5.0 and rows[c.a].omega == rows[c.b].omega
               and rows[c.a].steps == rows[c.b].steps in (8, 16) and c.subject == c.b for c in c5)
    one = [c for c in t.claims if "omega" in c.id]
    assert len(one) == 3 and all(rows[c.a].omega == 1.0 and rows[c.b].omega == 4.0 and rows[c.a].steps == 1
                                 and c.metric == "clap" for c in one)
    assert {"zeros", "vae-recon"} <= set(rows)


def test_heatmap_figure_writes_the_values_and_intervals(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    cells = {(nu, w): f"n{nu:g}-w{w:g}" for nu in (1.0, 5.0) for w in (2.0, 5.0)}
    dists = {name: {"fd": Dist(10.0 * i + 1, 10.0 * i + 1 + rng.normal(size=50)),
                    "clap": Dist(0.1 * i, 0.1 * i + 0.01 * rng.normal(size=50))}
             for i, name in enumerate(cells.values())}
    result = SimpleNamespace(table=Table("grid", "grid", ()), columns={"fd": "FD[x]", "clap": "CLAP[y]"}, dists=dists)
    path = heatmap_figure([("8 steps", cells)], ("fd", "clap", "kl"), suffix="fig5")(None, result, tmp_path)
    assert path == tmp_path / "grid_fig5.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "grid_fig5.csv") as f:
        recs = list(csv.DictReader(f))
    assert len(recs) == 4 * 2  # "kl" is not a column of the result: left out
    for r in recs:
        m = "fd" if r["metric"] == "FD[x]" else "clap"
        d = dists[r["row"]][m]
        assert cells[float(r["ν"]), float(r["ω"])] == r["row"] and r["panel"] == "8 steps"
        assert float(r["value"]) == pytest.approx(d.value) and (float(r["lo"]), float(r["hi"])) == pytest.approx(
            d.interval())
