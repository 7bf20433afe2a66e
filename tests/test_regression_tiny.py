"""CI regression: the committed tiny checkpoints reproduce results/tiny/regression.json, a normal run
cannot rewrite either, and a change to the sampler fails the check.

The record changes only through `python reproduce/regression.py --update-reference`.
"""

import hashlib
import os
import tempfile
from pathlib import Path

import pytest
from scripts import load_script

from soundctm.experiments import regression as R

SCRIPT = Path(__file__).resolve().parent.parent / "reproduce" / "regression.py"
# the procedural corpus, shared between test runs (artifacts are never reused by the regression)
CORPUS_CACHE = Path(os.environ.get("SOUNDCTM_TEST_CACHE", Path(tempfile.gettempdir()) / "soundctm-test-cache"))


def _snapshot() -> dict:
    files = sorted(p for p in R.CHECKPOINTS.rglob("*") if p.is_file()) + [R.RECORD]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _script():
    return load_script(SCRIPT, "regression_script")


@pytest.mark.slow
def test_committed_checkpoints_reproduce_the_record_and_the_check_writes_nothing(capsys):
    before = _snapshot()
    rc = _script().main(["--cache", str(CORPUS_CACHE)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "every metric and verdict as recorded" in out
    assert _snapshot() == before


@pytest.mark.slow
def test_a_sampler_change_fails_the_regression(monkeypatch):
    from soundctm.edm import karras_sigmas
    from soundctm.experiments import generation

    # the student's grid with rho = 5 instead of 7: a plausible one-character bug
    monkeypatch.setattr(generation, "karras_steps", lambda n: karras_sigmas(n + 1, rho=5.0))
    got = R.compute(CORPUS_CACHE, rows=("student-4",))
    moved = R.compare(R.load_record(), got)
    assert moved and all(m.startswith("student-4") for m in moved), moved


def test_compare_reports_moved_metrics_and_flipped_verdicts():
    rec = {"metrics": {"a": {"fd": 100.0, "kl": 0.0}}, "verdicts": {"(b)": True}, "self_tests": {"(b)": False}}
    same = {"metrics": {"a": {"fd": 100.0 * (1 + 0.5 * R.REL_TOL), "kl": 0.0}}, "verdicts": {"(b)": True},
            "self_tests": {"(b)": False}}
    assert R.compare(rec, same) == []
    moved = {"metrics": {"a": {"fd": 100.0 * (1 + 2 * R.REL_TOL), "kl": 0.0}}, "verdicts": {"(b)": False},
             "self_tests": {"(b)": False}}
    out = R.compare(rec, moved)
    assert len(out) == 2 and out[0].startswith("a fd") and "flipped" in out[1]


def test_a_committed_vae_built_for_another_corpus_is_an_error_not_a_retrain(tmp_path):
    import shutil

    from soundctm.io import load_safetensors, save_safetensors

    root = tmp_path / "checkpoints"
    shutil.copytree(R.CHECKPOINTS, root)
    tensors, meta = load_safetensors(root / "vae.safetensors")
    meta["extra"] = {**meta.get("extra", {}), "corpus": "synth-s9-16000-32768-000000000000"}
    save_safetensors(root / "vae.safetensors", tensors, meta)
    before = sorted(p.name for p in root.rglob("*"))
    with pytest.raises(ValueError, match="--update-reference") as e:
        R.committed_tier(root).load(CORPUS_CACHE)
    assert "vae.safetensors" in str(e.value)
    assert sorted(p.name for p in root.rglob("*")) == before


@pytest.mark.slow
@pytest.mark.ray
def test_rows_scored_as_ray_tasks_equal_the_in_process_path(tmp_path):
    """`--workers 2` scores rows as Ray tasks into the same store; the artifacts are the same bytes' worth."""
    import numpy as np

    from soundctm.experiments.runner import Runner

    tier = R.committed_tier()
    rows = [r for r in R.REGRESSION.rows if r.name in ("student-1", "zeros")]
    got = {}
    for workers in (0, 2):
        runner = Runner(tier, CORPUS_CACHE, workers=workers, n_units=4, store=tmp_path / f"w{workers}",
                        log=lambda *a: None)
        got[workers] = runner.score_all(rows)
        assert all(runner.scores_path(r).exists() for r in rows)
    for r in rows:
        a, b = got[0][r.name], got[2][r.name]
        assert np.array_equal(a.unit, b.unit)
        np.testing.assert_allclose(a.frames, b.frames, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.clap, b.clap, rtol=1e-5, atol=1e-6)
