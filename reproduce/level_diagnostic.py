#!/usr/bin/env python
"""Diagnostic for the tiny tier's generators: how often is a generated clip near-silent, where every
corpus clip holds an event at RMS >= 0.06 over its span?

    python reproduce/level_diagnostic.py     # the instrument's rows from the cache (generates what is missing)

For each row, the fraction of its clips with waveform RMS under 1e-3 and under 1e-2, and the median RMS,
beside the test clips' own minimum and median. A missing event counts against a row in every distance;
this says how much of a row's gap is silence rather than a wrong sound.
"""

import sys

import numpy as np

from soundctm.experiments.main import make_runner, parser
from soundctm.experiments.tables import get_table

TABLE = get_table("instrument")

ROWS = ("vae-recon", "teacher", "teacher-euler-1", "student-1", "student-16")
THRESHOLDS = (1e-3, 1e-2)


def rms(w) -> float:
    return float(np.sqrt(np.mean(np.asarray(w, np.float64) ** 2)))


def main(argv=None) -> int:
    args = parser(__doc__).parse_args(argv)
    runner = make_runner(args)
    unit, _, _ = runner.items()
    ref = np.array([rms(runner.units[int(u)].audio) for u in sorted(set(unit.tolist()))])
    print(f"test clips: {len(ref)}, RMS min {ref.min():.3g}, median {np.median(ref):.3g}")
    heads = " ".join(f"{f'RMS<{t:g}':>10s}" for t in THRESHOLDS)
    print(f"{'row':16s} {'clips':>6s} {heads} {'median':>8s}")
    for name in ROWS:
        wavs, _, _ = runner.audio(TABLE.row(name))
        v = np.array([rms(w) for w in wavs])
        print(f"{name:16s} {len(v):6d} " + " ".join(f"{np.mean(v < t):10.3f}" for t in THRESHOLDS)
              + f" {np.median(v):8.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
