"""Ray Train path of the training loop: 1 Ray worker gives the plain single-process losses exactly."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
from soundctm.train.loop import TrainConfig, read_metrics, run_training
from soundctm.commands.train import train_on_ray as run_training_ray

root = sys.argv[1]
cfg = TrainConfig(kind="distill", data="synthetic", steps=3, batch_size=4, synthetic_clips=4, max_ode_steps=3,
                  checkpoint_every=2, threads=1)
run_training(cfg, root + "/plain", progress=False)
summary = run_training_ray(cfg, root + "/ray", workers=1, init_kwargs={"_temp_dir": root + "/t"})
print(json.dumps({"plain": read_metrics(root + "/plain"), "ray": read_metrics(root + "/ray"),
                  "summary": summary}))
"""


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_one_ray_worker_equals_the_plain_path():
    # own Ray session in a subprocess, short temp dir (Unix socket paths <= 107 bytes), no token auth
    with tempfile.TemporaryDirectory(prefix="sr", dir="/tmp") as d:
        env = dict(os.environ, RAY_AUTH_MODE="disabled", SOUNDCTM_CACHE=d + "/cache")
        env.pop("RAY_ADDRESS", None)
        r = subprocess.run(
            [sys.executable, "-c", SCRIPT, d], cwd=ROOT, env=env, capture_output=True, text=True, timeout=170
        )
        assert r.returncode == 0, r.stderr[-3000:]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        plain, ray = out["plain"], out["ray"]
        assert [m["step"] for m in plain] == [0, 1, 2] == [m["step"] for m in ray]
        for key in ("loss", "ctm", "dsm", "lambda_dsm", "grad_norm"):
            assert [m[key] for m in plain] == [m[key] for m in ray], key
        assert (Path(d) / "ray" / "export.safetensors").exists()
        assert (Path(d) / "ray" / "checkpoints" / "ckpt-00000003.pt").exists()
        assert out["summary"]["steps"] == 3


FAULT_SCRIPT = r"""
import json, sys
from soundctm.train.loop import TrainConfig, read_metrics, run_training
from soundctm.commands.train import train_on_ray as run_training_ray

root = sys.argv[1]
cfg = TrainConfig(kind="teacher", data="synthetic", steps=4, batch_size=4, synthetic_clips=4,
                  checkpoint_every=2, threads=1)
summary = run_training_ray(cfg, root + "/ray", workers=1, max_failures=1,
                           init_kwargs={"_temp_dir": root + "/t"})
print(json.dumps({"ray": read_metrics(root + "/ray"), "summary": summary}))
"""


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ray_worker_failure_resumes_from_the_last_checkpoint():
    """The worker dies after step 2 (checkpoint at 2); Ray restarts it (FailureConfig) and it resumes: the
    losses equal a plain uninterrupted run's."""
    from soundctm.train.loop import TrainConfig, read_metrics, run_training

    with tempfile.TemporaryDirectory(prefix="sr", dir="/tmp") as d:
        env = dict(
            os.environ, RAY_AUTH_MODE="disabled", SOUNDCTM_CACHE=d + "/cache", SOUNDCTM_FAULT_AT_STEP="2"
        )
        env.pop("RAY_ADDRESS", None)
        r = subprocess.run(
            [sys.executable, "-c", FAULT_SCRIPT, d],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=170,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert (Path(d) / "ray" / ".fault-injected").exists()
        assert out["summary"]["resumed_from"] == 2
        cfg = TrainConfig(
            kind="teacher",
            data="synthetic",
            steps=4,
            batch_size=4,
            synthetic_clips=4,
            checkpoint_every=2,
            threads=1,
            export=False,
        )
        run_training(cfg, Path(d) / "plain", progress=False)
        plain = read_metrics(Path(d) / "plain")
        assert [m["step"] for m in out["ray"]] == [0, 1, 2, 3]
        assert [m["loss"] for m in out["ray"]] == [m["loss"] for m in plain]
