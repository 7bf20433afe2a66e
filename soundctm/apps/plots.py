"""PNG figures of the applications: intensity curves against their targets (Figs. 10-11) and
log-frequency spectrograms (Fig. 14). Needs matplotlib (imported when a figure is drawn)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

__all__ = ["intensity_grid", "spectrogram_grid", "log_spectrogram", "MissingPlotting"]


class MissingPlotting(RuntimeError):
    """matplotlib is not installed."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # an optional dependency of the figures only
        raise MissingPlotting("drawing the figures needs matplotlib: pip install matplotlib") from e
    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    tmp.replace(path)
    return path


def _finish(plt, fig, path, title: str) -> Path:
    """Title, write atomically, close the figure."""
    if title:
        fig.suptitle(title, fontsize=10)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def intensity_grid(obtained: dict[str, dict[str, list[np.ndarray]]], targets: dict[str, np.ndarray],
                   frame_seconds: float, path, *, title: str = "", item_labels: list[str] | None = None) -> Path:
    """One row per method (`obtained[method][curve]`: the curves obtained for that target), one column per
    target curve; the target dashed in black. `frame_seconds`: the hop between curve frames. A legend under the
    grid names the target and the k-th obtained curve of each panel (`item_labels[k]`; default "obtained", or
    "obtained, item k" when a panel has several)."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    methods, curves = list(obtained), list(targets)
    n_items = 0
    fig, axes = plt.subplots(max(1, len(methods)), len(curves), figsize=(2.6 * len(curves), 2.0 * max(1, len(methods))),
                             sharex=True, sharey=True, squeeze=False)
    for r, m in enumerate(methods or [""]):
        for c, name in enumerate(curves):
            ax = axes[r][c]
            t = np.arange(len(targets[name])) * frame_seconds
            for k, y in enumerate(obtained.get(m, {}).get(name, [])):
                ax.plot(np.arange(len(y)) * frame_seconds, y, lw=1.0, color=f"C{k}")
                n_items = max(n_items, k + 1)
            ax.plot(t, targets[name], "k--", lw=1.5)
            if r == 0:
                ax.set_title(name)
            if c == 0:
                ax.set_ylabel("\n".join(textwrap.wrap(m, 26) + ["dB"]) if m else "dB", fontsize=7)
            if r == len(methods) - 1:
                ax.set_xlabel("s")
    labels = list(item_labels or [])[:n_items]
    labels += ["obtained" if n_items == 1 else f"obtained, item {k + 1}" for k in range(len(labels), n_items)]
    handles = [Line2D([], [], color="k", ls="--", lw=1.5)] + [Line2D([], [], color=f"C{k}", lw=1.0)
                                                              for k in range(n_items)]
    fig.legend(handles, ["target"] + labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1 + n_items,
               fontsize=8, frameon=False)
    return _finish(plt, fig, path, title)


def log_spectrogram(x: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """dB power spectrogram [frames, n_fft // 2 + 1] (periodic Hann window, centred)."""
    x = np.asarray(x, dtype=np.float64)
    x = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect" if len(x) > n_fft // 2 else "constant")
    n_frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    spec = np.fft.rfft(x[idx] * win, axis=-1)
    return 10.0 * np.log10(spec.real ** 2 + spec.imag ** 2 + 1e-10)


def spectrogram_grid(panels: list[list[tuple[str, np.ndarray]]], sample_rate: int, path, *,
                     cutoff_hz: float | None = None, title: str = "", n_fft: int = 1024, hop: int = 256) -> Path:
    """One row per clip, one column per (title, waveform) panel; log-frequency axis, a dotted line at the
    cut-off."""
    plt = _pyplot()
    n_rows, n_cols = len(panels), max(len(p) for p in panels)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 2.6 * n_rows), squeeze=False, sharey=True)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    for r, row in enumerate(panels):
        for c, (name, wav) in enumerate(row):
            ax = axes[r][c]
            s = log_spectrogram(wav, n_fft, hop)
            times = np.arange(s.shape[0]) * hop / sample_rate
            ax.pcolormesh(times, freqs[1:], s[:, 1:].T, shading="auto", cmap="magma", vmin=s.max() - 90, vmax=s.max())
            ax.set_yscale("log")
            ax.set_ylim(freqs[1], sample_rate / 2)
            if cutoff_hz:
                ax.axhline(cutoff_hz, color="w", ls=":", lw=1.0)
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel("Hz")
            if r == n_rows - 1:
                ax.set_xlabel("s")
    return _finish(plt, fig, path, title)
