"""The ν x ω declaration (soundctm/experiments/tables/nu_omega.py) and the heatmap figure (experiments.figures): the
grid's settings, runs and claims; the figure's CSV against the result's values and intervals, and its PNG."""

import csv
from types import SimpleNamespace

import numpy as np
import pytest

import soundctm.experiments.tables.nu_omega as mod
from soundctm.experiments import Items, get_table
from soundctm.experiments.catalog import STUDENT
from soundctm.experiments.figures import heatmap_figure
from soundctm.experiments.spec import Table
from soundctm.experiments.stats import Dist


def test_nu_omega_declaration():
    t = mod.TABLE
    assert get_table("nu_omega") is t and len(t.figures) == 3
    assert t.items == Items(samples_per_caption=1) and t.metrics == ("fd", "clap")
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


def _captured(monkeypatch, module, name):
    """Replace module.<name> (a save helper taking (..., fig, path, ...)) to keep the figure instead."""
    got = {}

    from matplotlib.figure import Figure

    def keep(*args, **kw):
        got["fig"] = next(a for a in args if isinstance(a, Figure))
        return "kept.png"

    monkeypatch.setattr(module, name, keep)
    return got


def test_spectrogram_figure_titles_each_item_by_its_caption_not_the_row_labels(monkeypatch):
    pytest.importorskip("matplotlib")
    import soundctm.experiments.figures as F

    caps = ["A low pitched police siren wails slowly", "A buzzer drones loudly with a low hum over the recording"]
    monkeypatch.setattr(F, "item_audio", lambda runner, row, idx: [np.sin(np.arange(8000) * 0.1 * (1 + idx[0]))])
    runner = SimpleNamespace(K=1, S=1, units=[0, 1], items=lambda: (None, caps),
                             comp=SimpleNamespace(sample_rate=16000))
    got = _captured(monkeypatch, F, "_save")
    F.spectrogram_figure([("γ = 0", ["a", "b"]), ("γ = 0.5", ["c", "d"])], ["1 step", "16 steps"])(
        runner, SimpleNamespace(table=SimpleNamespace(name="t")), "/nonexistent")
    fig = got["fig"]
    subs = fig.subfigs
    assert [s._suptitle.get_text() for s in subs] == [f"\u201c{c}\u201d" for c in caps]
    for s in subs:
        labels = [ax.get_ylabel() for ax in s.axes if ax.get_ylabel()]
        assert labels == ["γ = 0\nkHz", "γ = 0.5\nkHz", "dB re the panel's peak"]  # two rows, the colour bar
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_intensity_grid_has_a_legend_of_the_target_and_each_obtained_curve(monkeypatch):
    pytest.importorskip("matplotlib")
    from soundctm.apps import plots

    got = _captured(monkeypatch, plots, "_finish")
    t = {"rising": np.linspace(-45, -15, 20), "flat": np.full(20, -30.0)}
    plots.intensity_grid({"default": {c: [v + 1, v - 1] for c, v in t.items()}}, t, 0.1, "/nonexistent",
                         item_labels=["first item", "second item"])
    (legend,) = got["fig"].legends
    assert [x.get_text() for x in legend.get_texts()] == ["target", "first item", "second item"]
    plots.intensity_grid({"a": {"flat": [t["flat"]]}, "b": {"flat": [t["flat"]]}}, {"flat": t["flat"]}, 0.1, "/x")
    assert [x.get_text() for x in got["fig"].legends[0].get_texts()] == ["target", "obtained"]
