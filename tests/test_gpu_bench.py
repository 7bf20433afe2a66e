"""The GPU benchmark's code, at a size a CPU runs in seconds (the CUDA-graph mode is CUDA-only and skipped).

The fixed-shape sampler loop must be Algorithm 1 as `soundctm.sampling.sample` computes it, bit for bit;
a benchmark call must produce what the library pipeline (text tower -> sample -> VAE decode) produces;
`run` must time every mode / step count / nu and describe the device; the script writes the JSON.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from scripts import load_script

import soundctm
from soundctm.experiments import gpubench as G
from soundctm.sampling import karras_steps, sample

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_bench.py"


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return G.build(G.SMALL_SIZE, "cpu")


@pytest.mark.parametrize("steps,nu,always_uncond", [(1, 1.0, False), (4, 1.0, False), (3, 5.0, False),
                                                    (2, 1.0, True)])
def test_fixed_sampler_is_algorithm_1(pipe, steps, nu, always_uncond):
    g = torch.Generator().manual_seed(steps)
    z = 80.0 * torch.randn((2, *pipe.latent_shape), generator=g)
    ids = torch.randint(3, 100, (2, pipe.ids.shape[1]), generator=g)
    with torch.no_grad():
        cond = pipe.text(ids)
        got = G.FixedSampler(pipe.student, steps, 2, 4.0, nu, always_uncond)(z, cond, pipe.uncond)
        want = sample(pipe.student, z, karras_steps(steps), cond, pipe.uncond, omega=4.0, nu=nu,
                      always_uncond=always_uncond)
    assert torch.equal(got, want)


def test_a_benchmark_call_is_the_library_pipeline(pipe):
    call = G.make_call(pipe, "eager-fp32", 2, 5.0)
    got = call()
    g = torch.Generator().manual_seed(0)
    z_T = 80.0 * torch.randn((1, *pipe.latent_shape), generator=g)
    with torch.no_grad():
        z = sample(pipe.student, z_T, karras_steps(2), pipe.text(pipe.ids), pipe.uncond, omega=5.0, nu=5.0)
        want = pipe.vae.decode(z)
    assert got.shape == (1, 1, pipe.latent_shape[1] * pipe.vae.hop)
    assert torch.allclose(got, want, atol=1e-6)
    with pytest.raises(RuntimeError, match="CUDA"):
        G.make_call(pipe, "cuda-graph", 1)
    with pytest.raises(ValueError, match="unknown mode"):
        G.make_call(pipe, "fp8", 1)


def _script():
    return load_script(SCRIPT, "gpu_bench_script")


def test_the_script_times_every_mode_and_writes_the_json(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "bench.json"
    assert _script().main(["--small", "--device", "cpu", "--out", str(out), "--steps", "1,2", "--nu", "1,5",
                           "--modes", "eager-fp32,bf16,cuda-graph", "--repeats", "2", "--warmup", "1"]) == 0
    res = json.loads(out.read_text())
    rows = res["rows"]
    assert {r["mode"] for r in rows} == {"eager-fp32", "bf16"}  # no CUDA graph on a CPU
    assert len(rows) == 2 * 2 * 2 and all(r["median_s"] > 0 and len(r["seconds"]) == 2 for r in rows)
    assert [(r["steps"], r["nu"]) for r in rows[:4]] == [(1, 1.0), (2, 1.0), (1, 5.0), (2, 5.0)]
    assert res["env"]["device_type"] == "cpu" and res["env"]["device"]
    # the commit of the checkout the code runs from; none in a tree that is not one (a source tarball)
    root = Path(soundctm.__file__).resolve().parents[1]
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True)
    if (root / ".git").exists() and top.returncode == 0 and Path(top.stdout.strip()).resolve() == root:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        assert res["provenance"]["git_commit"] in (head, head + "+dirty")
    else:
        assert res["provenance"]["git_commit"] is None
    assert res["size"]["latent_shape"] == [16, 32] and set(res["components_eager_fp32_16_steps"]) == {
        "text", "sampler", "decoder"}
    if not torch.cuda.is_available():  # the paper-size run refuses a machine without CUDA
        assert _script().main(["--device", "cuda"]) == 2


@pytest.mark.slow
def test_the_compile_mode_runs(pipe):
    """torch.compile's tracing (the eager backend here: the inductor's C++ build would dominate a CPU test)."""
    got = G.make_call(pipe, "compile", 2, 5.0, compile_backend="eager")()
    assert torch.allclose(got, G.make_call(pipe, "eager-fp32", 2, 5.0)(), atol=1e-2)
    rows = G.run(G.SMALL_SIZE, "cpu", steps=(1,), nus=(1.0,), modes=("compile",), repeats=1, warmup=0,
                 compile_backend="eager", log=lambda *a: None)["rows"]
    assert len(rows) == 1 and rows[0]["mode"] == "compile" and rows[0]["median_s"] > 0
