"""Seeding of the training loops: what an example sees depends on (seed, step, example index) only."""

import pytest
import torch

from soundctm.ctm import draw_distill
from soundctm.edm import karras_sigmas
from soundctm.rng import example_generators
from soundctm.train.data import epoch_permutation, global_indices, pairs_for, worker_indices
from soundctm.train.loop import TrainConfig, load_data, resolve_config
from soundctm.train.teacher import TeacherTask, teacher_draws

SHAPE = (16, 128)


def _distill_draws(step, idx):
    gens = example_generators(7, step, idx, "distill")
    return draw_distill(gens, karras_sigmas(40), SHAPE, omega_range=(2.0, 5.0), p_uncond=0.3, max_ode_steps=8)


def _by_example(d, idx):
    """Per-example tuple of every draw, keyed by global example index."""
    out = {}
    for j, g in enumerate(idx):
        out[g] = (
            d.times.it[j],
            d.times.iu[j],
            d.times.is_[j],
            d.omega[j],
            d.drop[j],
            d.noise[j],
            d.dsm_sigma[j],
            d.dsm_noise[j],
        )
    return out


@pytest.mark.parametrize("world", [2, 4])
def test_worker_split_covers_global_batch(world):
    for step in (0, 3):
        parts = [worker_indices(step, 8, r, world) for r in range(world)]
        assert sorted(sum(parts, [])) == global_indices(step, 8)
        assert all(len(p) == 8 // world for p in parts)
    with pytest.raises(ValueError):
        worker_indices(0, 6, 0, 4)


@pytest.mark.parametrize("world", [2, 4])
def test_distill_draws_do_not_depend_on_worker_count(world):
    for step in (0, 5):
        one = _by_example(_distill_draws(step, global_indices(step, 8)), global_indices(step, 8))
        many = {}
        for r in range(world):
            idx = worker_indices(step, 8, r, world)
            many.update(_by_example(_distill_draws(step, idx), idx))
        assert one.keys() == many.keys()
        for g in one:
            for a, b in zip(one[g], many[g]):
                assert torch.equal(torch.as_tensor(a), torch.as_tensor(b)), (step, g)
    # and they do depend on the step and on the example
    d0, d1 = _distill_draws(0, [0, 1]), _distill_draws(1, [0, 1])
    assert not torch.equal(d0.noise, d1.noise)
    assert not torch.equal(d0.noise[0], d0.noise[1])


def test_teacher_draws_and_data_order_do_not_depend_on_worker_count():
    step, n_pairs = 13, 10
    idx = global_indices(step, 8)
    drop, sigma, noise = teacher_draws(example_generators(3, step, idx, "teacher"), SHAPE, 0.5)
    pairs = pairs_for(3, idx, n_pairs)
    for r in range(4):
        sub = worker_indices(step, 8, r, 4)
        d2, s2, n2 = teacher_draws(example_generators(3, step, sub, "teacher"), SHAPE, 0.5)
        assert torch.equal(d2, drop[r::4]) and torch.equal(s2, sigma[r::4]) and torch.equal(n2, noise[r::4])
        assert torch.equal(pairs_for(3, sub, n_pairs), pairs[r::4])


def test_epoch_permutation_visits_every_pair_once():
    n = 23
    p0, p1 = epoch_permutation(0, 0, n), epoch_permutation(0, 1, n)
    assert sorted(p0.tolist()) == list(range(n)) and sorted(p1.tolist()) == list(range(n))
    assert not torch.equal(p0, p1)
    assert torch.equal(p0, epoch_permutation(0, 0, n))
    # global indices 0 .. n-1 are epoch 0 in order; n .. 2n-1 are epoch 1
    assert torch.equal(pairs_for(0, range(n), n), p0)
    assert torch.equal(pairs_for(0, range(n, 2 * n), n), p1)


def test_teacher_gradient_is_the_same_for_one_and_two_workers():
    """Averaging the gradients of the r::N halves (what workers all-reduce) gives the 1-worker gradient."""
    cfg = resolve_config(TrainConfig(kind="teacher", data="synthetic", batch_size=4, synthetic_clips=4))
    task = TeacherTask(cfg, load_data(cfg), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-zero output layers, so every parameter gets a gradient
        for p in task.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    params = [p for p in task.model.parameters()]

    def grads(rank, world):
        task.model.zero_grad(set_to_none=True)
        task.losses(2, rank, world)["loss"].backward()
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]

    full = grads(0, 1)
    halves = [grads(r, 2) for r in range(2)]
    for g, a, b in zip(full, *halves):
        torch.testing.assert_close(g, (a + b) / 2, rtol=1e-4, atol=1e-7)
