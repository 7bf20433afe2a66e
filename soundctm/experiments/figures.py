"""Figures of a table (`Table.figures`: functions (runner, result, out_dir) -> path of a PNG):

    spectrogram_figure  the same items (same z_T and caption) under several rows, as the paper's Figs. 3, 4,
                        7 and 13: one line per (label, rows) and item, one panel per row;
    heatmap_figure      metric values over a grid of two sampling settings (the paper's ν x ω heatmaps,
                        Figs. 5 and 12), the values with their 95 % intervals also written as CSV.

Drawing needs matplotlib (imported when a figure is drawn; `apps.plots.MissingPlotting` otherwise).
"""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import numpy as np

from soundctm.apps.plots import MissingPlotting, log_spectrogram
from soundctm.experiments.sources import item_audio
from soundctm.experiments.spec import Row
from soundctm.experiments.stats import LOWER_IS_BETTER

__all__ = ["spectrogram_figure", "heatmap_figure"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise MissingPlotting("drawing the figures needs matplotlib: pip install matplotlib") from e
    return plt


def _save(plt, fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, dpi=90, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    tmp.replace(path)
    return path


def spectrogram_figure(grid: list[tuple[str, list[Row]]], columns: list[str], *, suffix: str = "spectrograms",
                       title: str = "", n_items: int = 2, n_fft: int = 1024, hop: int = 256):
    """Spectrograms of the same items under several rows: for each of the first `n_items` test clips (its
    first caption and sample), one line per (label, rows) of `grid`, one panel per row (titled by `columns`); each
    item a block titled by its caption, every panel in dB below its own peak (one colour bar per item).
    Writes <out>/<table>_<suffix>.png."""
    if any(len(rows) != len(columns) for _, rows in grid):
        raise ValueError("every line of the grid needs one row per column")

    def figure(runner, result, out_dir):
        plt = _pyplot()
        per_unit = runner.K * runner.S
        items = [u * per_unit for u in range(min(n_items, len(runner.units)))]
        caps = runner.items()[1]
        sr = runner.comp.sample_rate
        n_lines = len(grid)
        # one sub-figure per item, its caption as the sub-figure's title (not in the rotated row labels, where
        # long captions ran into the next row's); the row labels name the setting only
        fig = plt.figure(figsize=(3.2 * len(columns) + 1.2, (2.0 * n_lines + 0.5) * len(items) + 0.4),
                         layout="constrained")
        subs = fig.subfigures(len(items), 1, squeeze=False)[:, 0] if items else []
        freqs = np.fft.rfftfreq(n_fft, 1.0 / sr) / 1000.0
        for sub, i in zip(subs, items):
            sub.suptitle("\n".join(textwrap.wrap(f"\u201c{caps[i]}\u201d", 30 * len(columns))), fontsize=8,
                         style="italic")
            axes = sub.subplots(n_lines, len(columns), squeeze=False, sharex=True, sharey=True)
            mesh = None
            for r, (label, rows) in enumerate(grid):
                for c, row in enumerate(rows):
                    s = log_spectrogram(item_audio(runner, row, [i])[0], n_fft, hop)
                    ax = axes[r][c]
                    times = np.arange(s.shape[0]) * hop / sr
                    mesh = ax.pcolormesh(times, freqs, (s - s.max()).T, shading="auto", cmap="magma", vmin=-80,
                                         vmax=0)
                    if r == 0:
                        ax.set_title(columns[c], fontsize=9)
                    if c == 0:
                        ax.set_ylabel("\n".join(textwrap.wrap(label, 22) + ["kHz"]), fontsize=7)
                    if r == n_lines - 1:
                        ax.set_xlabel("s", fontsize=8)
                    ax.tick_params(labelsize=7)
            if mesh is not None:
                cb = sub.colorbar(mesh, ax=axes, shrink=0.9, pad=0.01)
                cb.set_label("dB re the panel's peak", fontsize=7)
                cb.ax.tick_params(labelsize=7)
        if title:
            fig.suptitle(title, fontsize=10)
        return _save(plt, fig, Path(out_dir) / f"{result.table.name}_{suffix}.png")

    figure.__name__ = f"spectrogram_figure_{suffix}"
    return figure


def heatmap_figure(panels: list[tuple[str, dict[tuple[float, float], str]]], metrics: tuple[str, ...], *,
                   x: str = "ω", y: str = "ν", suffix: str = "heatmap", title: str = ""):
    """Heatmaps of metric values over a grid: `panels` = [(panel title, {(y value, x value): row name})], one
    line of the figure per panel, one column per metric family; each cell the row's value with its 95 %
    interval. Darker is better (the colour map is reversed for higher-is-better metrics), as in the paper.
    Writes <out>/<table>_<suffix>.png and <out>/<table>_<suffix>.csv (panel, y, x, metric column, value, lo,
    hi, row)."""

    def figure(runner, result, out_dir):
        out_dir = Path(out_dir)
        base = out_dir / f"{result.table.name}_{suffix}"
        fams = [m for m in metrics if m in result.columns]
        recs = []
        for name, cells in panels:
            for (yv, xv), row in sorted(cells.items()):
                for m in fams:
                    d = result.dists.get(row, {}).get(m)
                    if d is not None:
                        lo, hi = d.interval()
                        recs.append({"panel": name, y: yv, x: xv, "metric": result.columns[m], "value": d.value,
                                     "lo": lo, "hi": hi, "row": row})
        base.parent.mkdir(parents=True, exist_ok=True)
        with open(base.with_suffix(".csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["panel", y, x, "metric", "value", "lo", "hi", "row"])
            w.writeheader()
            w.writerows(recs)
        plt = _pyplot()
        fig, axes = plt.subplots(len(panels), len(fams), figsize=(3.8 * len(fams), 3.0 * len(panels)), squeeze=False,
                                 layout="constrained")
        for p, (name, cells) in enumerate(panels):
            ys = sorted({k[0] for k in cells})
            xs = sorted({k[1] for k in cells})
            for c, m in enumerate(fams):
                ax = axes[p][c]
                val = np.full((len(ys), len(xs)), np.nan)
                text = {}
                for (yv, xv), row in cells.items():
                    d = result.dists.get(row, {}).get(m)
                    if d is not None:
                        lo, hi = d.interval()
                        val[ys.index(yv), xs.index(xv)] = d.value
                        text[ys.index(yv), xs.index(xv)] = f"{d.value:.3g}\n[{lo:.3g}, {hi:.3g}]"
                cmap = "viridis" if LOWER_IS_BETTER.get(m, True) else "viridis_r"
                im = ax.imshow(val, origin="lower", cmap=cmap, aspect="auto")
                for (i, j), t in text.items():
                    ax.text(j, i, t, ha="center", va="center", fontsize=7,
                            bbox={"facecolor": "white", "alpha": 0.6, "linewidth": 0})
                ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
                ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
                ax.set_xlabel(x)
                ax.set_ylabel(y)
                ax.set_title(f"{name}: {result.columns[m]}", fontsize=8)
                fig.colorbar(im, ax=ax, fraction=0.046)
        if title:
            fig.suptitle(title, fontsize=10)
        return _save(plt, fig, base.with_suffix(".png"))

    figure.__name__ = f"heatmap_figure_{suffix}"
    return figure
