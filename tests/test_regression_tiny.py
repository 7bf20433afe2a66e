"""CI regression: the committed tiny checkpoints must reproduce the metrics recorded in results/tiny/.

`python reproduce/table3.py` writes the checkpoints (results/tiny/checkpoints/) and the recorded values
(results/tiny/regression.json) in the same run. This test regenerates the first test clips with the
same seeds from those files and recomputes FD / KL / CLAP with the committed in-domain evaluators: a
change to sampling, the student, the VAE or the metrics that moves a number fails here.
"""

import json
import os
import tempfile
from pathlib import Path

import pytest

from soundctm import benchmark as B

RECORDED = B.TINY_RESULTS / "regression.json"
# Tolerances, relative to the recorded value (plus a small absolute floor for values near 0).
REL_TOL = {"FD": 0.01, "KL": 0.01, "CLAP": 0.01, "latent_mean_abs": 1e-4}
ABS_TOL = 1e-4


def _tol(name: str, ref: float) -> float:
    family = name.split("[")[0]
    return REL_TOL[family] * abs(ref) + ABS_TOL


@pytest.fixture(scope="module")
def corpus():
    from soundctm.data.corpus import tiny_corpus

    root = Path(os.environ.get("SOUNDCTM_TEST_CACHE", Path(tempfile.gettempdir()) / "soundctm-test-cache"))
    return tiny_corpus(root, progress=False)


@pytest.mark.slow
def test_committed_checkpoints_reproduce_recorded_metrics(corpus):
    files = B.regression_files()
    missing = [str(p) for p in files.values() if not p.exists()]
    assert not missing, f"committed checkpoints missing (run python reproduce/table3.py): {missing}"
    recorded = json.loads(RECORDED.read_text())["metrics"]
    got = B.regression_metrics(corpus, files)
    assert set(got) == set(recorded)
    moved = []
    for row, metrics in recorded.items():
        assert set(got[row]) == set(metrics), row
        for name, ref in metrics.items():
            if abs(got[row][name] - ref) > _tol(name, ref):
                moved.append(f"{row} {name}: recorded {ref:.6g}, now {got[row][name]:.6g} (tol {_tol(name, ref):.3g})")
    assert not moved, "metrics moved:\n" + "\n".join(moved)
