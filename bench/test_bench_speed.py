"""Table 8's end-to-end latency (text encoder + sampler + decoder, batch 1) of SoundCTM-DiT and the two
consistency-distillation peers' architectures at 1/2/4/8 steps, the unconditional branch skipped at nu = 1 (ours)
and evaluated (the official samplers). Random weights; on a GPU the paper sizes, on a CPU the same code at the
small test size (`experiments.speed.paper_pipeline(small=True)`).

    pytest bench/test_bench_speed.py --benchmark-only
"""

import pytest
import torch

from soundctm.experiments.catalog import AUDIO_LCM, CONSISTENCY_TTA, STUDENT
from soundctm.experiments.generation import sample_row
from soundctm.experiments.spec import Row
from soundctm.experiments.speed import paper_pipeline
from soundctm.experiments.timing import synchronize
from soundctm.rng import prior_noise

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SYSTEMS = {"soundctm-dit-1b": (STUDENT, "ctm", 5.0), "audiolcm": (AUDIO_LCM, "cm", 5.0),
           "consistencytta": (CONSISTENCY_TTA, "cm", 4.0)}


@pytest.fixture(scope="module", params=list(SYSTEMS))
def system(request):
    torch.set_num_threads(1) if DEVICE == "cpu" else None
    return request.param, paper_pipeline(request.param, DEVICE, small=DEVICE == "cpu")


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
@pytest.mark.parametrize("always_uncond", [False, True], ids=["uncond-skipped", "uncond-evaluated"])
def test_end_to_end_latency(benchmark, system, steps, always_uncond):
    name, pipe = system
    run, sampler, omega = SYSTEMS[name]
    row = Row(f"{name}-{steps}", run=run, sampler=sampler, steps=steps, omega=omega)

    @torch.no_grad()
    def once():
        cond, uncond = pipe.encode()
        z_T = prior_noise([0], pipe.latent_shape, device=DEVICE, generator_device=None)
        wav = pipe.decode(sample_row(row, pipe.model, z_T, cond, uncond, always_uncond=always_uncond))
        synchronize(DEVICE)  # the kernels have run, not just been queued
        return wav

    wav = benchmark.pedantic(once, rounds=3, iterations=1, warmup_rounds=1)
    assert wav.shape[0] == 1 and bool(torch.isfinite(wav).all())
