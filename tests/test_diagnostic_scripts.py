"""The recipe diagnostics in reproduce/ refuse bad input with one line on stderr and exit status 2, before any
work (no teacher is loaded, no solve runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1")

CASES = [
    ("one_step_ceiling.py", ["--pairs", "0"], "--pairs must be positive"),
    ("one_step_ceiling.py", ["--steps", "-1"], "--steps must be positive"),
    ("one_step_ceiling.py", ["--lr", "0"], "need --lr > 0"),
    ("recipe_sweep.py", ["--only", "no-such-variant"], "unknown variant(s) ['no-such-variant']"),
]


@pytest.mark.parametrize("script,argv,message", CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_bad_input_is_one_line_and_status_2(tmp_path, script, argv, message):
    proc = subprocess.run([sys.executable, str(REPO / "reproduce" / script), *argv], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not any(tmp_path.iterdir())
