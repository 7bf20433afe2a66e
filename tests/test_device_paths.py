"""The tiny Table 3 path on a device: `cpu` always, `cuda` where present (marked `gpu`).

The runner runs the committed tiny models (teacher, 1- and 16-step student, VAE reconstruction,
decoded zeros) on a tier whose `device` is the parameter, with a global forward pre-hook that fails
on any module input that is not on the module's own device. The latents are checked against an
independent computation with the library's functions on the CPU (bit for bit on the CPU; within
float tolerance on CUDA, whose prior noise comes from the same CPU-seeded draws), every metric
must be finite, and the synchronised timing must give positive seconds per sample at batch 1
and 2 and with the unconditional branch evaluated at nu = 1.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from soundctm.edm import karras_sigmas
from soundctm.experiments import regression as R
from soundctm.experiments.catalog import reference_rows, student_row, teacher_row
from soundctm.experiments.runner import Runner
from soundctm.experiments.stats import Bootstrap, metric_dists
from soundctm.experiments.timing import timing_column
from soundctm.nn.text import Conditioner
from soundctm.rng import prior_noise
from soundctm.sampling import heun_sample, karras_steps, sample
from soundctm.train.checkpoint import load_export

CORPUS_CACHE = Path(os.environ.get("SOUNDCTM_TEST_CACHE", Path(tempfile.gettempdir()) / "soundctm-test-cache"))
N_UNITS = 3
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])]
ROWS = (teacher_row(), student_row(1, run=R._STUDENT1), student_row(16, nu=5.0, run=R._STUDENT1),
        *reference_rows("vae-recon", "zeros"))


@pytest.fixture
def on_device_only():
    """A forward pre-hook on every module: each tensor input must be on the module's device."""
    seen = []

    def hook(module, args, kwargs):
        own = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
        if not own:
            return
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, torch.Tensor) and a.device != own[0].device:
                raise AssertionError(f"{type(module).__name__} on {own[0].device} got an input on {a.device}")
        seen.append(own[0].device.type)

    h = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, a: hook(m, a, {}))
    yield seen
    h.remove()


def _reference_latents(row, files, units, seed, steps_grid):
    """The row's latents straight from the library on the CPU (no runner, no tier)."""
    model = load_export(files["teacher" if row.sampler == "heun" else "student"])
    from soundctm.nn.text import get_text_encoder

    con = Conditioner.for_model(get_text_encoder("tiny-clap", path=files["clap"]), model)
    caps = [u.captions[0] for u in units]
    z_T = prior_noise([seed + i for i in range(len(caps))], tuple(model.latent_shape))
    if row.sampler == "heun":
        return heun_sample(model, z_T, steps_grid, con(caps), con.uncond, omega=row.omega)
    return sample(model, z_T, steps_grid, con(caps), con.uncond, omega=row.omega, nu=row.nu, gamma=row.gamma)


@pytest.fixture
def no_tf32():
    """CUDA compared with the CPU at float32 precision: TF32 matmuls / convolutions off (restored after)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("device", DEVICES)
def test_tiny_table3_path_runs_on_the_tiers_device(device, tmp_path, on_device_only, one_thread, no_tf32):
    tier = replace(R.committed_tier(), device=device, timing_repeats=2)
    runner = Runner(tier, CORPUS_CACHE, store=tmp_path / "store", n_units=N_UNITS, log=lambda *a: None)
    ref = runner.reference()
    boot = Bootstrap(N_UNITS, 20, 0)
    files = R.committed_files()
    for row in ROWS:
        d = metric_dists(runner.scores(row), ref, ("fd", "kl", "clap"), boot)
        assert all(math.isfinite(x.value) for x in d.values()), (row.name, d)
        if row.source != "sampler":
            continue
        z = runner.latents(row)
        grid = karras_sigmas(row.steps) if row.sampler == "heun" else karras_steps(row.steps)
        want = _reference_latents(row, files, runner.units, runner.seed, grid)
        if device == "cpu":
            assert torch.equal(z, want), row.name
        else:
            assert torch.allclose(z, want, atol=2e-3, rtol=1e-3), (row.name, float((z - want).abs().max()))
    assert device in on_device_only  # the models really ran there

    t = runner.timings(ROWS[1], batches=(1, 2), always_uncond=(False, True))
    assert set(t) == {timing_column(1), timing_column(2), timing_column(1, True), timing_column(2, True)}
    assert all(len(v) == 2 and all(x > 0 for x in v) for v in t.values())
    # the always-uncond option changes nothing where nu != 1 already evaluates both branches
    assert set(runner.timings(ROWS[2], always_uncond=(False, True))) == {timing_column(1)}
