"""GPU latency of SoundCTM-DiT at paper size (batch 1, 10.03 s at 44.1 kHz): text tower + 1/2/4/8/16
student steps + VAE decoder, in every mode of soundctm.experiments.gpubench (eager fp32, bf16,
torch.compile, one CUDA graph of the fixed-shape pipeline).

    pytest bench/test_bench_gpu.py --benchmark-only        # needs a CUDA device (skipped without one)

`python bench/gpu_bench.py` writes the same measurements to results/gpu/bench.json.
"""

import pytest
import torch

from soundctm.experiments import gpubench as G

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def pipe():
    return G.build(G.PAPER_SIZE, "cuda")


@pytest.mark.parametrize("nu", [1.0, 5.0])
@pytest.mark.parametrize("steps", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("mode", G.MODES)
def test_gpu_latency(benchmark, pipe, mode, steps, nu):
    call = G.make_call(pipe, mode, steps, nu)

    def once():
        out = call()
        torch.cuda.synchronize()
        return out

    out = benchmark.pedantic(once, rounds=20, warmup_rounds=3, iterations=1)
    benchmark.extra_info.update(device=torch.cuda.get_device_name(), mode=mode, steps=steps, nu=nu)
    assert out.shape == (1, 1, pipe.latent_shape[1] * pipe.vae.hop)
    assert bool(torch.isfinite(out).all())
