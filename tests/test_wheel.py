"""The wheel works from any folder: built from the source tree, installed into a fresh virtual environment
(torch==2.13.0, then the wheel with its dependencies), its `soundctm generate` and `soundctm evaluate` run in a
folder outside the checkout on the tiny models the wheel ships, and nothing is written into site-packages."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundctm.io import load_safetensors
from soundctm.nn.text import TinyCLAP
from soundctm.paths import committed_tiny_dir

ROOT = Path(__file__).resolve().parents[1]
MODELS = committed_tiny_dir()
# what the commands default to (generate, refine, control, extend) and what `evaluate --embedder-set tiny` loads
REQUIRED = ("student-tiny-dit.safetensors", "vae.safetensors", "clap.safetensors", "teacher-tiny-dit.safetensors")
PIP_TIMEOUT = 900

pytestmark = pytest.mark.slow


def _sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def _run(cmd, *, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _build_wheel(tmp: Path, env: dict) -> Path:
    """`pip wheel` (with build isolation: the `[build-system]` requirements, as `pip install .` does) of a copy of
    what the wheel is built from (pyproject.toml, README.md, soundctm/), so the build leaves no build/ or egg-info
    in the checkout."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "soundctm", src / "soundctm", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", src],
         cwd=tmp, env=env, timeout=PIP_TIMEOUT)
    (wheel,) = (tmp / "dist").glob("soundctm-*.whl")
    return wheel


def test_the_wheel_ships_the_models_and_generates_and_evaluates_from_another_folder(tmp_path):
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    wheel = _build_wheel(tmp_path, env)

    # the wheel holds every committed tiny model, byte for byte
    committed = {str(p.relative_to(MODELS)): _sha(p) for p in MODELS.rglob("*.safetensors")}
    assert set(REQUIRED) <= set(committed)
    assert any(n.startswith("evaluators/tiny-evt-v2-") for n in committed), sorted(committed)
    prefix = "soundctm/assets/tiny/"
    with zipfile.ZipFile(wheel) as z:
        shipped = {n[len(prefix):]: hashlib.sha256(z.read(n)).hexdigest() for n in z.namelist()
                   if n.startswith(prefix) and n.endswith(".safetensors")}
    assert shipped == committed

    # a fresh virtual environment: torch first (a plain torch requirement would pull a CUDA build), then the wheel
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path, env=env, timeout=300)
    py, exe = venv / "bin" / "python", venv / "bin" / "soundctm"
    _run([py, "-m", "pip", "install", "-q", "torch==2.13.0"], cwd=tmp_path, env=env, timeout=PIP_TIMEOUT)
    _run([py, "-m", "pip", "install", "-q", wheel], cwd=tmp_path, env=env, timeout=PIP_TIMEOUT)
    installed = time.perf_counter() - t0
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path,
                     env=env).stdout.strip())
    assert site.is_relative_to(venv)

    work = tmp_path / "work"  # outside the checkout; the cache and HOME are fresh too
    work.mkdir()
    run_env = dict(env, HOME=str(tmp_path / "home"), SOUNDCTM_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
                   PYTHONDONTWRITEBYTECODE="1")
    before = _tree(site)
    where = _run([py, "-c", "import soundctm; from soundctm.experiments.tier import TINY; "
                            "print(soundctm.__file__); print(TINY.results_dir)"], cwd=work, env=run_env)
    pkg_file, results_dir = where.stdout.split()
    assert Path(pkg_file).is_relative_to(site) and not Path(pkg_file).is_relative_to(ROOT)
    assert Path(results_dir) == work / "results" / "tiny"

    _run([exe, "generate", "heavy rain falls", "--steps", "1", "-n", "2", "--seed", "0", "--out", "gen"],
         cwd=work, env=run_env)
    wavs = sorted((work / "gen").glob("*.wav"))
    assert [w.name for w in wavs] == ["heavy-rain-falls-seed0-1step.wav", "heavy-rain-falls-seed1-1step.wav"]
    for w in wavs:
        audio, sr = sf.read(w, dtype="float32")
        assert sr == 16000 and audio.shape == (128 * 256,)  # the tiny VAE: 16 kHz, 128 latent frames, hop 256
        assert np.isfinite(audio).all() and audio.std() > 1e-4
        side = json.loads(w.with_suffix(".json").read_text())
        for role, name in (("student", "student-tiny-dit"), ("vae", "vae"), ("text_encoder", "clap")):
            rec = side["checkpoints"][role]
            assert Path(rec["path"]) == site / "soundctm" / "assets" / "tiny" / f"{name}.safetensors"
            assert rec["sha256"] == committed[f"{name}.safetensors"]

    # a reference folder (the same file stems, other audio) and the captions the CLAP score needs
    rng = np.random.default_rng(0)
    (work / "ref").mkdir()
    for w in wavs:
        sf.write(work / "ref" / w.name, (0.1 * rng.standard_normal(128 * 256)).astype(np.float32), 16000)
    with open(work / "captions.csv", "w", newline="") as f:
        csv.writer(f).writerows([("youtube_id", "caption"), *((w.stem, "heavy rain falls") for w in wavs)])
    _run([exe, "evaluate", "gen", "--reference", "ref", "--captions", "captions.csv", "--no-progress",
          "--out", "scores.json"], cwd=work, env=run_env)
    res = json.loads((work / "scores.json").read_text())
    for col in ("FD[tiny-evt]", "KL[tiny-evt]", "IS[tiny-evt]", "CLAP[tiny-clap]"):
        assert math.isfinite(res[col]), (col, res[col])
    emb = res["provenance"]["embedders"]
    assert emb["tiny-clap"]["weights"] == TinyCLAP.load(MODELS / "clap.safetensors").checksum()
    (v2,) = sorted(MODELS.glob("evaluators/tiny-evt-v2-*.safetensors"))
    assert emb["tiny-evt"]["weights"] == load_safetensors(v2)[1]["weights_sha1"]

    assert _tree(site) == before  # nothing written into (or removed from) the installation
    assert not (site / "results").exists()
    print(f"wheel {wheel.stat().st_size / 1e6:.1f} MB; build + fresh venv + install {installed:.0f} s; "
          f"total {time.perf_counter() - t0:.0f} s")
