"""How far training is deterministic: bit-identical for the same seed and thread count; the tiny tier
pins its training threads so a user's `--threads` cannot change the trained models."""

import hashlib

import pytest
import torch
from safetensors.torch import load_file

from soundctm.experiments.tier import TRAIN_THREADS, pinned_threads
from soundctm.train.loop import TrainConfig, run_training


def _train(run_dir, threads=None, seed=0):
    cfg = TrainConfig(kind="teacher", preset="tiny-dit", steps=12, batch_size=8, data="synthetic", synthetic_clips=16,
                      checkpoint_every=100, seed=seed, threads=threads)
    run_training(cfg, run_dir, progress=False, log=lambda *a, **k: None)
    t = load_file(run_dir / "export.safetensors")
    return hashlib.sha256(b"".join(t[k].numpy().tobytes() for k in sorted(t))).hexdigest()


@pytest.mark.slow
def test_same_seed_and_threads_give_bit_identical_models_and_the_tier_pins_threads(tmp_path):
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = _train(tmp_path / "a")
        b = _train(tmp_path / "b")
        assert a == b
        assert _train(tmp_path / "seed1", seed=1) != a  # the seed matters
        torch.set_num_threads(2)  # a user's --threads 2 ...
        with pinned_threads(TRAIN_THREADS):  # ... does not reach the tier's training
            assert torch.get_num_threads() == TRAIN_THREADS
            c = _train(tmp_path / "c")
        assert torch.get_num_threads() == 2
        assert c == a
    finally:
        torch.set_num_threads(prev)
